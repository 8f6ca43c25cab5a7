#!/bin/sh
# Runs the image under containerd (`ctr run`) as the issue's end-to-end tests
# will: a containerd of its own (own socket, root and state dirs, so a system
# containerd is left alone), the image imported from podman's store, and in
# one network namespace of the script's own (loopback only): `--version`, a
# scheduler (ready, V8 pool flag in NODE_OPTIONS), a seed peer, two peer
# daemons and a small origin, each its own container; both peers `get` the
# origin's file (digest checked) and the origin must have sent it once.
# Bounded (about two minutes at worst); needs root, podman, containerd, ctr,
# ip. Logs in $CTR_SMOKE_DIR.
set -eu
IMAGE=${1:-localhost/damselfly:0.1.0}
DIR=${CTR_SMOKE_DIR:-/var/tmp/damselfly-ctr-smoke}
RUNDIR=/run/damselfly-ctr-smoke-$$
SOCK=$RUNDIR/containerd.sock
NS=damselfly-smoke
NETNS=dfsmoke$$
TASKS="origin sched seed peer1 peer2"
SIZE=$((4 * 1024 * 1024))
rm -rf "$DIR/logs" && mkdir -p "$DIR/root" "$DIR/logs" "$RUNDIR"
containerd --root "$DIR/root" --state "$RUNDIR/state" --address "$SOCK" \
  --config /dev/null >"$DIR/containerd.log" 2>&1 &
CTRD=$!
c() { ctr -a "$SOCK" -n $NS "$@"; }
cleanup() {
  # The shim outlives containerd: delete each task (it waits for the exit)
  # before its container, then stop containerd.
  for t in $TASKS; do
    c task delete --force "$t" >/dev/null 2>&1 || true
    c container rm "$t" >/dev/null 2>&1 || true
  done
  kill "$CTRD" 2>/dev/null || true
  wait "$CTRD" 2>/dev/null || true
  rm -rf "$RUNDIR"
  ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT
fail() {
  echo "smoke-ctr: FAIL: $*" >&2
  for t in $TASKS; do [ ! -s "$DIR/logs/$t.log" ] || { echo "--- $t" >&2; tail -n 8 "$DIR/logs/$t.log" >&2; }; done
  exit 1
}
# Starts container $1 from the image in the namespace, running the rest.
start() {
  name=$1; shift
  c run -d --with-ns "network:/var/run/netns/$NETNS" --log-uri "file://$DIR/logs/$name.log" "$IMAGE" "$name" "$@" >/dev/null
}
# Polls URL $2 from inside container $1 until it answers 2xx.
wait_ok() {
  i=0
  until c task exec --exec-id "probe$i" "$1" node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$2" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 60 ] || fail "$1: $2 did not answer"; sleep 0.5
  done
}
env_of() { tr '\0' '\n' <"/proc/$(c task ls | awk -v t="$1" '$1 == t {print $2}')/environ"; }
i=0
until ctr -a "$SOCK" version >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 40 ] || fail "containerd did not start ($DIR/containerd.log)"; sleep 0.25
done

ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
podman save --format oci-archive "$IMAGE" | c images import --base-name "${IMAGE%:*}" - >/dev/null
got=$(timeout 30 ctr -a "$SOCK" -n $NS run --rm --with-ns "network:/var/run/netns/$NETNS" "$IMAGE" version damselfly --version)
echo "smoke-ctr: --version $got"

# The origin: SIZE bytes (deterministic), and /count of the body bytes sent.
# shellcheck disable=SC2016 # JavaScript, not shell, in single quotes
start origin node -e '
  const size = Number(process.argv[1]); const body = Buffer.alloc(size); let sent = 0;
  for (let i = 0; i < size; i++) body[i] = (i * 2654435761) >>> 24;
  require("node:http").createServer((req, res) => {
    if (req.url === "/count") return res.end(String(sent));
    const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
    const from = m ? Number(m[1]) : 0, to = m && m[2] ? Number(m[2]) + 1 : size;
    const part = body.subarray(from, to); sent += part.length;
    res.writeHead(m ? 206 : 200, { "content-length": part.length, "accept-ranges": "bytes", ...(m ? { "content-range": `bytes ${from}-${to - 1}/${size}` } : {}) });
    res.end(part);
  }).listen(9000, "127.0.0.1");
  process.on("SIGTERM", () => process.exit(0));' "$SIZE"
start sched damselfly scheduler --listen 127.0.0.1:8002 --metrics-listen 127.0.0.1:8003
wait_ok sched http://127.0.0.1:8003/readyz
env_of sched | grep -q -- '^NODE_OPTIONS=.*--v8-pool-size=[0-9]' || fail "no --v8-pool-size in the scheduler's NODE_OPTIONS"
echo "smoke-ctr: scheduler ready under containerd, $(env_of sched | grep '^NODE_OPTIONS=')"

# Seed and peers: every port its own, all on the namespace's loopback.
n=0
for t in seed peer1 peer2; do
  n=$((n + 1))
  seed=; [ "$t" = seed ] && seed=--seed
  start "$t" damselfly daemon $seed --hostname "$t" --scheduler 127.0.0.1:8002 --data-dir /tmp/data \
    --listen "127.0.0.1:65${n}00" --upload-listen "127.0.0.1:65${n}01" --proxy-listen "127.0.0.1:65${n}02" \
    --metrics-listen "127.0.0.1:65${n}03"
done
wait_ok seed http://127.0.0.1:65103/readyz
wait_ok peer1 http://127.0.0.1:65203/readyz
wait_ok peer2 http://127.0.0.1:65303/readyz
echo "smoke-ctr: seed peer and two peer daemons ready"

want=$(c task exec --exec-id digest origin node -e '
  fetch("http://127.0.0.1:9000/blob").then((r) => r.arrayBuffer()).then((b) => process.stdout.write(require("node:crypto").createHash("sha256").update(Buffer.from(b)).digest("hex")))')
before=$(c task exec --exec-id count0 origin node -e 'fetch("http://127.0.0.1:9000/count").then((r) => r.text()).then((s) => process.stdout.write(s))')
n=1
for t in peer1 peer2; do
  n=$((n + 1))
  timeout 60 ctr -a "$SOCK" -n $NS task exec --exec-id get "$t" damselfly get http://127.0.0.1:9000/blob -O /tmp/blob \
    --daemon "http://127.0.0.1:65${n}00" --digest "sha256:$want" --no-progress >"$DIR/logs/get-$t.log" 2>&1 ||
    fail "$t: get failed: $(tail -n 5 "$DIR/logs/get-$t.log")"
done
after=$(c task exec --exec-id count1 origin node -e 'fetch("http://127.0.0.1:9000/count").then((r) => r.text()).then((s) => process.stdout.write(s))')
egress=$((after - before))
echo "smoke-ctr: two peers got $SIZE bytes each (sha256 checked); origin sent $egress bytes for them"
[ "$egress" -le "$SIZE" ] || fail "origin sent $egress bytes for two gets of $SIZE: the second did not come from the swarm"

c task kill -s TERM sched
i=0
until [ "$(c task ls | awk '$1 == "sched" {print $3}')" = STOPPED ]; do
  i=$((i + 1)); [ $i -lt 40 ] || fail "scheduler did not stop on SIGTERM"; sleep 0.25
done
echo "smoke-ctr: scheduler stopped on SIGTERM"
echo "smoke-ctr: ok"
