#!/bin/sh
# Builds the two local base images the Containerfile starts from, since no
# public registry is reachable from our machines:
#   localhost/damselfly-build-base  Debian minbase (debootstrap) + g++/make/python3
#                                   + this machine's Node (binary, headers, npm):
#                                   better-sqlite3 compiles against those headers.
#   localhost/damselfly-node-base   only this machine's Node binary, the shared
#                                   libraries it and /bin/sh load, and a passwd
#                                   with an unprivileged user (uid 10001).
# Both take Node from the machine so the image runs the Node the project was
# built and tested with. Needs root, buildah and debootstrap; the only network
# it uses is Debian's mirror (debootstrap). Skips a base that already exists
# unless REBUILD_BASE=1.
set -eu
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
NODE=$(readlink -f "$(command -v node)")
NODE_PREFIX=$(dirname "$(dirname "$NODE")")
WORK=${BASE_WORKDIR:-/var/tmp/damselfly-image-base}

have() { buildah inspect --type image "$1" >/dev/null 2>&1 && [ "${REBUILD_BASE:-0}" != 1 ]; }

# Copies a file with the libraries ldd says it loads, keeping their paths.
copy_with_libs() {
  dest=$1; shift
  for f in "$@"; do
    mkdir -p "$dest$(dirname "$f")" && cp -L "$f" "$dest$f"
    for lib in $(ldd "$f" | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
      mkdir -p "$dest$(dirname "$lib")" && cp -L "$lib" "$dest$lib"
    done
  done
}

build_base() {
  have localhost/damselfly-build-base && return 0
  root=$WORK/build-rootfs
  rm -rf "$root" && mkdir -p "$WORK"
  debootstrap --variant=minbase --include=g++,make,python3 "$SUITE" "$root" "$MIRROR"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  cp -L "$NODE" "$root/usr/bin/node"
  mkdir -p "$root/usr/include" "$root/usr/lib/node_modules"
  cp -a "$NODE_PREFIX/include/node" "$root/usr/include/node"
  cp -a "$NODE_PREFIX/lib/node_modules/npm" "$root/usr/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$root" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/bin:/bin --cmd /bin/sh "$ctr"
  buildah commit --rm "$ctr" localhost/damselfly-build-base >/dev/null
  rm -rf "$root"
}

node_base() {
  have localhost/damselfly-node-base && return 0
  root=$WORK/node-rootfs
  rm -rf "$root" && mkdir -p "$root/usr/bin" "$root/bin" "$root/etc" "$root/tmp" "$root/home/damselfly"
  copy_with_libs "$root" "$NODE" /bin/sh
  [ "$NODE" = /usr/bin/node ] || mv "$root$NODE" "$root/usr/bin/node"
  # The loader's path as the binaries name it (/lib64 is a link on Debian).
  [ -e "$root/lib64" ] || { mkdir -p "$root/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"; }
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\ndamselfly:x:10001:10001:damselfly:/home/damselfly:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\ndamselfly:x:10001:\n' >"$root/etc/group"
  chown 10001:10001 "$root/home/damselfly"
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$root" / >/dev/null
  buildah config --env PATH=/usr/bin:/bin "$ctr"
  buildah commit --rm "$ctr" localhost/damselfly-node-base >/dev/null
  rm -rf "$root"
}

node_base
build_base
