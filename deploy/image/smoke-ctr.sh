#!/bin/sh
# Runs the image under containerd (`ctr run`) as the issue's end-to-end tests
# will: a containerd of its own (own socket, root and state dirs under
# /var/tmp and /run, so a system containerd is left alone), the image
# imported from podman's store, `--version` and a scheduler that becomes
# ready, inside a fresh network namespace with only loopback. Bounded; needs
# root, podman, containerd and ctr.
set -eu
IMAGE=${1:-localhost/damselfly:0.1.0}
DIR=${CTR_SMOKE_DIR:-/var/tmp/damselfly-ctr-smoke}
RUNDIR=/run/damselfly-ctr-smoke-$$
SOCK=$RUNDIR/containerd.sock
NS=damselfly-smoke
NETNS=dfsmoke$$
mkdir -p "$DIR/root" "$RUNDIR"
containerd --root "$DIR/root" --state "$RUNDIR/state" --address "$SOCK" \
  --config /dev/null >"$DIR/containerd.log" 2>&1 &
CTRD=$!
cleanup() {
  # The shim outlives containerd: delete the task (it waits for the exit)
  # before the container, then stop containerd.
  ctr -a "$SOCK" -n $NS task delete --force smoke >/dev/null 2>&1 || true
  ctr -a "$SOCK" -n $NS container rm smoke >/dev/null 2>&1 || true
  kill "$CTRD" 2>/dev/null || true
  wait "$CTRD" 2>/dev/null || true
  rm -rf "$RUNDIR"
  ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT
fail() { echo "smoke-ctr: FAIL: $*" >&2; tail -n 20 "$DIR/task.log" >&2 2>/dev/null || true; exit 1; }
i=0
until ctr -a "$SOCK" version >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 40 ] || fail "containerd did not start ($DIR/containerd.log)"; sleep 0.25
done

# A network namespace of the script's own with only loopback (up), as a test
# host of the issue's end-to-end tests will have.
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
podman save --format oci-archive "$IMAGE" | ctr -a "$SOCK" -n $NS images import --base-name "${IMAGE%:*}" - >/dev/null
got=$(timeout 30 ctr -a "$SOCK" -n $NS run --rm --with-ns "network:/var/run/netns/$NETNS" "$IMAGE" smoke-version damselfly --version)
echo "smoke-ctr: --version $got"

ctr -a "$SOCK" -n $NS run -d --with-ns "network:/var/run/netns/$NETNS" "$IMAGE" smoke \
  /usr/local/bin/damselfly scheduler --listen 127.0.0.1:8002 --metrics-listen 127.0.0.1:8003 >"$DIR/task.log" 2>&1
i=0
until ctr -a "$SOCK" -n $NS task exec --exec-id probe$i smoke node -e 'fetch("http://127.0.0.1:8003/readyz").then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 60 ] || fail "scheduler not ready under ctr"; sleep 0.5
done
pid=$(ctr -a "$SOCK" -n $NS task ls | awk '$1 == "smoke" {print $2}')
tr '\0' '\n' <"/proc/$pid/environ" | grep -q -- '^NODE_OPTIONS=.*--v8-pool-size=[0-9]' || fail "no --v8-pool-size in the scheduler's NODE_OPTIONS"
echo "smoke-ctr: scheduler ready under containerd, $(tr '\0' '\n' <"/proc/$pid/environ" | grep '^NODE_OPTIONS=')"
ctr -a "$SOCK" -n $NS task kill -s TERM smoke
i=0
until [ "$(ctr -a "$SOCK" -n $NS task ls | awk '$1 == "smoke" {print $3}')" = STOPPED ]; do
  i=$((i + 1)); [ $i -lt 40 ] || fail "scheduler did not stop on SIGTERM"; sleep 0.25
done
echo "smoke-ctr: scheduler stopped on SIGTERM"
echo "smoke-ctr: ok"
