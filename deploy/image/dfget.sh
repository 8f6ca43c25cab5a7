#!/bin/sh
# The image's dfget: bin/dfget starts with `#!/usr/bin/env node` and the run
# base has no env.
exec node /app/bin/dfget "$@"
