#!/bin/sh
# Builds Damselfly's image here, with no public registry: the local bases
# (deploy/image/base.sh, skipped when present), then the Containerfile.
#   IMAGE      tag to build (default localhost/damselfly:<package version>)
#   NPM_CACHE  host npm cache to mount into the build stage (default ~/.npm if
#              it exists): npm ci then reads most packages from disk.
# Prints the image's name, its size and the seconds each step took. Needs
# root and buildah; reaches only Debian's mirror (bases) and the npm registry
# (npm ci, with the host's network so the host's npm settings apply).
set -eu
cd "$(dirname "$0")/../.."
VERSION=$(node -p 'require("./package.json").version')
IMAGE=${IMAGE:-localhost/damselfly:$VERSION}
NPM_CACHE=${NPM_CACHE:-$HOME/.npm}

t0=$(date +%s)
deploy/image/base.sh
t1=$(date +%s)
set -- --layers --network host --file Containerfile --tag "$IMAGE"
if [ -d "$NPM_CACHE" ]; then set -- "$@" --volume "$NPM_CACHE:/root/.npm"; fi
buildah bud "$@" .
t2=$(date +%s)
size=$(buildah inspect --type image --format '{{.Size}}' "$IMAGE" 2>/dev/null || true)
[ -n "$size" ] || size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image=$IMAGE size_bytes=$size base_seconds=$((t1 - t0)) build_seconds=$((t2 - t1))"
