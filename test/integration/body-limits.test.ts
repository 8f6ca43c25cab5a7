// A request body declared 400 MiB, streamed to every server of a scheduler
// and a daemon: each refuses it early (its code, the stream or connection
// closed after a few MiB) and the process's memory stays put. Connect's
// default readMaxBytes is ~4 GiB, node keeps reading a body nobody wants to
// reuse the connection, and the gRPC fast path used to read and drop the
// rest of a message it had refused.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { spawnDamselfly, type DamselflyProc, type LogLine } from "../helpers/procs.js";
import { h1Oversized, h2Oversized, MiB, withRss, type Refusal } from "../helpers/oversized.js";
import { tempDir } from "../helpers/store.js";

const DECLARED = 400 * MiB;
// What a refused body may cost the server: its resident memory grows less
// than this, and it stops taking bytes after this many.
const RSS_BOUND = 100 * MiB;
const TAKEN_BOUND = 64 * MiB;
const SCHEDULER = "/damselfly.scheduler.v1.SchedulerService";
const DAEMON = "/damselfly.daemon.v1.DaemonService";

const portOf = (hostPort: unknown) => Number(String(hostPort).split(":").pop());

describe("an oversized request body is refused early, in bounded memory", () => {
  let scheduler: DamselflyProc;
  let daemon: DamselflyProc;
  let s: LogLine;
  let d: LogLine;
  let socket: string;

  // Cleanups of the suite: node:test's after() called inside before() would
  // run when that hook ends.
  const cleanups: (() => unknown)[] = [];
  const t = { after: (fn: () => unknown) => void cleanups.push(fn) };
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  before(async () => {
    const dir = tempDir(t, "df-body-limits-");
    scheduler = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], { t, name: "scheduler" });
    s = { ...(await scheduler.waitForLog("scheduler listening", 20_000)), ...(await scheduler.waitForLog("scheduler ready", 20_000)) };
    socket = join(dir, "api.sock");
    const args = ["--scheduler", String(s.listen), "--data-dir", join(dir, "data"), "--listen", `unix:${socket}`, "--listen", "127.0.0.1:0"];
    daemon = spawnDamselfly(["daemon", ...args, "--upload-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], {
      t,
      name: "daemon",
    });
    d = await daemon.waitForLog("daemon ready", 20_000);
  });

  // The process that serves (the scheduler's command respawns itself with
  // its V8 pool: its log lines carry the real pid).
  async function check<R extends Refusal>(ready: LogLine, send: () => Promise<R>): Promise<R> {
    const { result, before, peak } = await withRss(Number(ready.pid), send);
    assert.ok(peak - before < RSS_BOUND, `RSS grew ${((peak - before) / MiB).toFixed(1)} MiB`);
    assert.ok(result.sent < TAKEN_BOUND, `the server took ${(result.sent / MiB).toFixed(1)} MiB of the body`);
    return result;
  }

  test("scheduler: Connect, gRPC-web and the gRPC fast path answer RESOURCE_EXHAUSTED", { timeout: 120_000 }, async () => {
    const at = `http://${String(s.listen)}`;
    const connect = await check(s, () => h2Oversized(at, `${SCHEDULER}/AnnounceHost`, "application/proto", DECLARED));
    assert.equal(connect.status, 429, "Connect: resource_exhausted");
    const fast = await check(s, () => h2Oversized(at, `${SCHEDULER}/AnnounceHost`, "application/grpc", DECLARED, { grpcEnvelope: true }));
    assert.equal(fast.grpcStatus, "8", "gRPC fast path: RESOURCE_EXHAUSTED");
    const stream = await check(s, () => h2Oversized(at, `${SCHEDULER}/AnnouncePeer`, "application/grpc", DECLARED, { grpcEnvelope: true }));
    assert.equal(stream.grpcStatus, "8", "gRPC fast path, a stream: RESOURCE_EXHAUSTED");
    const web = await check(s, () => h2Oversized(at, `${SCHEDULER}/AnnounceHost`, "application/grpc-web", DECLARED, { grpcEnvelope: true }));
    assert.equal(web.grpcStatus, "8", "gRPC-web (Connect): RESOURCE_EXHAUSTED");
  });

  test("daemon API on the Unix socket and on TCP: RESOURCE_EXHAUSTED", { timeout: 120_000 }, async () => {
    const viaSocket = await check(d, () => h2Oversized("http://localhost", `${DAEMON}/StatTask`, "application/proto", DECLARED, { socketPath: socket }));
    assert.equal(viaSocket.status, 429);
    const viaTcp = await check(d, () => h2Oversized(`http://${String(d.apiNetwork)}`, `${DAEMON}/StatTask`, "application/proto", DECLARED));
    assert.equal(viaTcp.status, 429);
  });

  test("upload, proxy and metrics ports: 413 DF_ERR_BODY_TOO_LARGE and the connection closed", { timeout: 120_000 }, async () => {
    const cases: Array<[string, LogLine, number, string, string]> = [
      ["upload", d, portOf(d.upload), "GET", `/v1/tasks/${"a".repeat(64)}/pieces/0`],
      ["upload health", d, portOf(d.upload), "POST", "/healthz"],
      ["proxy blob", d, portOf(d.proxy), "GET", `/v2/library/x/blobs/sha256:${"b".repeat(64)}`],
      ["proxy health", d, portOf(d.proxy), "POST", "/readyz"],
      ["proxy absolute-form GET", d, portOf(d.proxy), "GET", "http://example.invalid/file"],
      ["daemon metrics", d, portOf(d.metrics), "POST", "/metrics"],
      ["scheduler metrics", s, portOf(s.metrics), "POST", "/metrics"],
    ];
    for (const [what, ready, port, method, target] of cases) {
      const r = await check(ready, () => h1Oversized(port, method, target, DECLARED));
      assert.equal(r.status, 413, `${what}: status`);
      assert.equal(r.headers["x-damselfly-error"], "DF_ERR_BODY_TOO_LARGE", `${what}: code`);
      assert.ok(r.closedByServer || r.sent < TAKEN_BOUND, `${what}: connection closed`);
    }
  });
});
