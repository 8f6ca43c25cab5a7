#!/bin/sh
# Image build time and size (issue 22's benchmark): deploy/image/build.sh
# three ways, each printing build.sh's own line (size_bytes, base_seconds,
# build_seconds):
#   cold     bases rebuilt (debootstrap) and no layer cache: a fresh machine
#   nochange nothing changed since: every layer from the cache
#   source   one source file changed: the npm ci layer is reused, the rest
#            (TypeScript build, prune, final stage) runs again
# Needs root, buildah, podman and debootstrap; reaches Debian's mirror and the
# npm registry only. MODES picks a subset (default: "cold nochange source").
set -eu
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/damselfly-bench:$$}
MODES=${MODES:-cold nochange source}
export IMAGE

stamp=src/cli/.bench-image-stamp.ts
cleanup() { rm -f "$stamp"; podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; }
trap cleanup EXIT

for mode in $MODES; do
  case $mode in
  cold)
    podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    # Drops the layer cache of earlier builds too (untagged build stages).
    podman image prune -f >/dev/null
    line=$(REBUILD_BASE=1 deploy/image/build.sh 2>/dev/null | tail -n1)
    ;;
  nochange) line=$(deploy/image/build.sh 2>/dev/null | tail -n1) ;;
  source)
    echo "export const benchStamp = $(date +%s%N);" >"$stamp"
    line=$(deploy/image/build.sh 2>/dev/null | tail -n1)
    rm -f "$stamp"
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  echo "$mode $line"
done
