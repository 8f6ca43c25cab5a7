#!/bin/sh
# Starts the image under podman and checks it runs, bounded (about a minute
# at worst) and with no network but the container's own loopback
# (--network none): `--version`, the scheduler (ready on /readyz, running as
# PID 1 with the V8 pool size in NODE_OPTIONS rather than restarted, as the
# unprivileged user) and the manager (its SQLite database opens: the native
# better-sqlite3 compiled in the build stage loads). Exits non-zero on the
# first failure. Needs root and podman.
set -eu
IMAGE=${1:-localhost/damselfly:$(node -p 'require("./package.json").version' 2>/dev/null || echo 0.1.0)}
NAME=damselfly-smoke-$$
fail() { echo "smoke: FAIL: $*" >&2; podman logs "$NAME" 2>&1 | tail -n 20 >&2 || true; exit 1; }
cleanup() { podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
# podman's default limits (nofile 1048576, nproc from containers.conf) are
# above what this machine lets even root raise a limit to: the container then
# fails to start with "error setting rlimit". Stay at or below our own.
# shellcheck disable=SC3045 # dash and bash both have ulimit -H
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
set -- --network none --ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096

# Polls URL inside the container, from the container's own loopback.
wait_ready() {
  i=0
  while [ $i -lt 60 ]; do
    if podman exec "$NAME" node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$1" 2>/dev/null; then return 0; fi
    i=$((i + 1)); sleep 0.5
  done
  return 1
}

want=$(node -p 'require("./package.json").version' 2>/dev/null || true)
got=$(timeout 30 podman run --rm "$@" "$IMAGE" --version)
[ -z "$want" ] || [ "$got" = "$want" ] || fail "--version printed '$got', want '$want'"
echo "smoke: --version $got"
# dfget is on PATH and is `damselfly get`: its usage names the output flag.
usage=$(timeout 30 podman run --rm "$@" --entrypoint dfget "$IMAGE" --help)
case $usage in *--output*) ;; *) fail "dfget --help printed no --output" ;; esac
echo "smoke: dfget on PATH"

podman run -d --name "$NAME" "$@" --cpus 2 "$IMAGE" \
  scheduler --listen 127.0.0.1:8002 --metrics-listen 127.0.0.1:8003 >/dev/null
wait_ready http://127.0.0.1:8003/readyz || fail "scheduler not ready"
pid=$(podman inspect --format '{{.State.Pid}}' "$NAME")
tr '\0' '\n' <"/proc/$pid/environ" | grep -q -- '^NODE_OPTIONS=.*--v8-pool-size=[0-9]' || fail "no --v8-pool-size in the scheduler's NODE_OPTIONS"
tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q '^node /app/bin/damselfly scheduler' || fail "PID 1 is not the scheduler: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
[ -z "$(ps -o pid= --ppid "$pid")" ] || fail "the scheduler restarted itself as a child process"
uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
[ "$uid" = 10001 ] || fail "scheduler runs as uid $uid, want 10001"
echo "smoke: scheduler ready as PID 1, uid $uid, $(tr '\0' '\n' <"/proc/$pid/environ" | grep '^NODE_OPTIONS=')"
podman stop -t 10 "$NAME" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || fail "scheduler exited $code on SIGTERM"
echo "smoke: scheduler stopped on SIGTERM, exit 0"
podman rm "$NAME" >/dev/null

podman run -d --name "$NAME" "$@" "$IMAGE" \
  manager --listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:8081 --data-dir /tmp/manager >/dev/null
wait_ready http://127.0.0.1:8081/readyz || fail "manager not ready"
podman exec "$NAME" node -e 'fs.statSync(process.argv[1]).size > 0 || process.exit(1)' /tmp/manager/manager.db 2>/dev/null ||
  podman exec "$NAME" node -e 'process.exit(fs.readdirSync("/tmp/manager").some((f) => f.endsWith(".db")) ? 0 : 1)' ||
  fail "manager wrote no SQLite database"
echo "smoke: manager ready, SQLite database written"
podman stop -t 10 "$NAME" >/dev/null
echo "smoke: ok"
