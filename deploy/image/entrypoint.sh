#!/bin/sh
# The image's `damselfly`. Node takes the size of V8's thread pool only at
# start, and bin/damselfly restarts the scheduler once to set it
# (src/cli/v8-pool.ts). In the image the size goes into NODE_OPTIONS before
# the one and only start instead: the same decision (cores from affinity and
# the cgroup's cpu.max, DAMSELFLY_V8_POOL_SIZE to override), so PID 1 is the
# scheduler itself and signals reach it directly. bin/damselfly sees the flag
# and does not restart.
set -eu
if [ "${1:-}" = scheduler ]; then
  case " ${NODE_OPTIONS:-} " in
  *--v8-pool-size*) ;;
  *)
    # A bad DAMSELFLY_V8_POOL_SIZE prints nothing here; bin/damselfly then
    # reports it and exits 2, as outside the image.
    size=$(node --input-type=module -e '
      const p = await import("/app/dist/src/cli/v8-pool.js");
      try { const n = p.schedulerPoolSize(process.execArgv, process.env, p.usableCores()); if (n !== undefined) process.stdout.write(String(n)); } catch {}
    ')
    if [ -n "$size" ]; then export NODE_OPTIONS="${NODE_OPTIONS:-} --v8-pool-size=$size"; fi
    ;;
  esac
fi
exec node /app/bin/damselfly "$@"
