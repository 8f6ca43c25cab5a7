// Per-task rate limits on real processes: `get --rate-limit`, the daemon's
// perTaskRateLimit from its YAML file (and a request's own limit replacing
// it), and the proxy's X-Damselfly-Rate-Limit header. The origin and the
// seed peer are unlimited (loopback, hundreds of MiB/s): the limit is what
// sets the pace. Each limit is checked by accounting (test/helpers/rate.ts):
// the bytes moved over the daemon's own account of the time are no more than
// the limit grants, which holds however busy the machine is.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { explained, getSummary, sha256File, sleep, storedPieces } from "../helpers/store.js";
import { assertBeyond, assertHeldTo, MiB } from "../helpers/rate.js";
import { taskId } from "../../src/common/task-id.js";
import type { LogLine } from "../helpers/procs.js";

// The daemon's own account of the transfer: "download served" carries how
// long the request took inside the daemon (from its arrival to the last byte
// stored), free of the `get` process's start-up.
function servedMs(d: DaemonHandle, since: number): number {
  const line = d.proc.logs.slice(since).find((l: LogLine) => l.msg === "download served");
  assert.ok(line, `${d.name} logged no "download served"`);
  return Number(line.ms);
}

describe("per-task rate limits", { timeout: 90_000 }, () => {
  let origin: Origin;
  let cluster: Cluster;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "damselfly-ratelimit-"));
    origin = await startOrigin();
    const yaml = join(dir, "daemon.yaml");
    writeFileSync(yaml, "perTaskRateLimit: 16MiB\nproxyRules: ['/rl/proxied/']\n");
    cluster = await startCluster({ peers: 1, seed: true });
    await cluster.addDaemon({ name: "capped", args: ["--config", yaml] });
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("64 MiB with get --rate-limit 16MiB is held to 16 MiB/s", { timeout: 40_000 }, async (t) => {
    const data = origin.addRandomFile("/rl/a.bin", 64 * MiB, "rl-a");
    const peer = cluster.peers[0]!;
    const mark = peer.proc.logs.length;
    const out = join(dir, "a.bin");
    const r = await explained(
      peer.get([origin.url("/rl/a.bin"), "-O", out, "--rate-limit", "16MiB", "--no-progress"], { timeoutMs: 30_000 }),
      peer,
      cluster.seed!,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), sha256Hex(data));
    const ms = servedMs(peer, mark);
    t.diagnostic(`${getSummary(r.stderr)?.line}; daemon: ${ms} ms`);
    assertHeldTo(64 * MiB, ms, 16 * MiB, "get --rate-limit 16MiB");
  });

  test("a low limit fetches pieces one after another, not all at once", { timeout: 40_000 }, async (t) => {
    origin.addRandomFile("/rl/low.bin", 1 * MiB, "rl-low");
    const url = origin.url("/rl/low.bin");
    const peer = cluster.peers[0]!;
    const mark = peer.proc.logs.length;
    // When each count of stored pieces was first seen.
    const seen = new Map<number, number>();
    const get = peer.get([url, "-O", join(dir, "low.bin"), "--rate-limit", "256KiB", "--no-progress"], { timeoutMs: 30_000 });
    let done = false;
    void get.finally(() => (done = true));
    while (!done) {
      const n = storedPieces(peer.dataDir, taskId({ url })).size;
      if (!seen.has(n)) seen.set(n, performance.now());
      await sleep(20);
    }
    const r = await get;
    assert.equal(r.code, 0, r.stderr);
    const ms = servedMs(peer, mark);
    const first = seen.get(1);
    const gap = first === undefined ? 0 : (seen.get(2) ?? performance.now()) - first;
    t.diagnostic(`1 MiB at 256 KiB/s: the second 512 KiB piece stored ${gap.toFixed(0)} ms after the first, all in ${ms} ms`);
    assertHeldTo(MiB, ms, 256 * 1024, "get --rate-limit 256KiB", 128 * 1024);
    // One after another, the second piece needs another 512 KiB of the
    // limit (about 2 s) after the first; both at once would share the limit
    // and land together. (A late look only shortens the gap seen.)
    assert.ok(first !== undefined, "one piece was never seen stored alone: both landed at once");
    assert.ok(gap >= 1_000, `the second piece was stored only ${gap.toFixed(0)} ms after the first`);
  });

  test("the daemon's perTaskRateLimit (YAML) caps a get; a request's own limit replaces it", { timeout: 40_000 }, async (t) => {
    const capped = cluster.daemons.find((d) => d.name === "capped")!;
    origin.addRandomFile("/rl/b.bin", 32 * MiB, "rl-b");
    let mark = capped.proc.logs.length;
    const r = await explained(capped.get([origin.url("/rl/b.bin"), "-O", join(dir, "b.bin"), "--no-progress"], { timeoutMs: 30_000 }), capped);
    assert.equal(r.code, 0, r.stderr);
    const ms = servedMs(capped, mark);
    t.diagnostic(`default 16 MiB/s: 32 MiB in ${ms} ms`);
    assertHeldTo(32 * MiB, ms, 16 * MiB, "the daemon's default perTaskRateLimit 16MiB");

    origin.addRandomFile("/rl/c.bin", 32 * MiB, "rl-c");
    mark = capped.proc.logs.length;
    const fast = await explained(
      capped.get([origin.url("/rl/c.bin"), "-O", join(dir, "c.bin"), "--rate-limit", "64MiB", "--no-progress"], { timeoutMs: 30_000 }),
      capped,
    );
    assert.equal(fast.code, 0, fast.stderr);
    const fastMs = servedMs(capped, mark);
    t.diagnostic(`--rate-limit 64MiB: 32 MiB in ${fastMs} ms`);
    assertBeyond(32 * MiB, fastMs, 16 * MiB, "--rate-limit 64MiB replaces the 16 MiB/s default");
    assertHeldTo(32 * MiB, fastMs, 64 * MiB, "get --rate-limit 64MiB");
  });

  test("a proxied download honours X-Damselfly-Rate-Limit; a malformed one is a 400", { timeout: 40_000 }, async (t) => {
    const capped = cluster.daemons.find((d) => d.name === "capped")!;
    const data = origin.addRandomFile("/rl/proxied/d.bin", 16 * MiB, "rl-d");
    const [host, port] = capped.proxy.split(":");
    const fetchVia = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: Buffer; ms: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        const started = performance.now();
        const req = http.request({ host, port: Number(port), path: origin.url("/rl/proxied/d.bin"), headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), ms: performance.now() - started, headers: res.headers }));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end();
      });
    const bad = await fetchVia({ "x-damselfly-rate-limit": "fast please" });
    assert.equal(bad.status, 400);
    assert.equal(bad.headers["x-damselfly-error"], "DF_ERR_INVALID_REQUEST");

    const r = await fetchVia({ "x-damselfly-rate-limit": "8MiB" });
    assert.equal(r.status, 200);
    assert.equal(r.headers["x-damselfly-cache"], "miss");
    assert.equal(sha256Hex(r.body), sha256Hex(data));
    t.diagnostic(`16 MiB through the proxy at 8 MiB/s: ${r.ms.toFixed(0)} ms`);
    assertHeldTo(16 * MiB, r.ms, 8 * MiB, "X-Damselfly-Rate-Limit: 8MiB");
  });
});
