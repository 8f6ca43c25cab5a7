// Per-task rate limits on real processes: `get --rate-limit`, the daemon's
// perTaskRateLimit from its YAML file (and a request's own limit replacing
// it), and the proxy's X-Damselfly-Rate-Limit header. The origin and the
// seed peer are unlimited (loopback, hundreds of MiB/s): the limit is what
// sets the pace.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { explained, getSummary, sha256File, sleep, storedPieces } from "../helpers/store.js";
import { taskId } from "../../src/common/task-id.js";
import type { LogLine } from "../helpers/procs.js";

const MiB = 1024 * 1024;

// The daemon's own account of the transfer: "download served" carries how
// long the request took inside the daemon (from its arrival to the last byte
// stored), free of the `get` process's start-up.
function servedMs(d: DaemonHandle, since: number): number {
  const line = d.proc.logs.slice(since).find((l: LogLine) => l.msg === "download served");
  assert.ok(line, `${d.name} logged no "download served"`);
  return Number(line.ms);
}

function assertSeconds(actualMs: number, expectedS: number, what: string, tolerance = 0.15): void {
  const s = actualMs / 1000;
  assert.ok(Math.abs(s - expectedS) <= expectedS * tolerance, `${what}: took ${s.toFixed(2)} s, expected ${expectedS} s +-${tolerance * 100}%`);
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

  test("64 MiB with get --rate-limit 16MiB takes 4 s +-15%", { timeout: 40_000 }, async (t) => {
    const data = origin.addRandomFile("/rl/a.bin", 64 * MiB, "rl-a");
    const peer = cluster.peers[0]!;
    const mark = peer.proc.logs.length;
    const out = join(dir, "a.bin");
    const r = await explained(peer.get([origin.url("/rl/a.bin"), "-O", out, "--rate-limit", "16MiB", "--no-progress"], { timeoutMs: 30_000 }), peer, cluster.seed!);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), sha256Hex(data));
    const ms = servedMs(peer, mark);
    t.diagnostic(`${getSummary(r.stderr)?.line}; daemon: ${ms} ms`);
    assertSeconds(ms, 4, "64 MiB at 16 MiB/s");
  });

  test("a low limit fetches pieces one after another, not all at once", { timeout: 40_000 }, async (t) => {
    origin.addRandomFile("/rl/low.bin", 1 * MiB, "rl-low");
    const url = origin.url("/rl/low.bin");
    const peer = cluster.peers[0]!;
    const mark = peer.proc.logs.length;
    const started = Date.now();
    let firstPieceAt = 0;
    const get = peer.get([url, "-O", join(dir, "low.bin"), "--rate-limit", "256KiB", "--no-progress"], { timeoutMs: 30_000 });
    let done = false;
    void get.finally(() => (done = true));
    while (!done && firstPieceAt === 0) {
      if (storedPieces(peer.dataDir, taskId({ url })).size > 0) firstPieceAt = Date.now() - started;
      await sleep(20);
    }
    const r = await get;
    assert.equal(r.code, 0, r.stderr);
    const ms = servedMs(peer, mark);
    t.diagnostic(`1 MiB at 256 KiB/s: first 512 KiB piece stored after ${firstPieceAt} ms, all in ${ms} ms`);
    assertSeconds(ms, 4, "1 MiB at 256 KiB/s", 0.2);
    // Both pieces at once would share the limit and land together at ~4 s.
    assert.ok(firstPieceAt > 0 && firstPieceAt < 3_000, `the first piece took ${firstPieceAt} ms`);
  });

  test("the daemon's perTaskRateLimit (YAML) caps a get; a request's own limit replaces it", { timeout: 40_000 }, async (t) => {
    const capped = cluster.daemons.find((d) => d.name === "capped")!;
    origin.addRandomFile("/rl/b.bin", 32 * MiB, "rl-b");
    let mark = capped.proc.logs.length;
    const r = await explained(capped.get([origin.url("/rl/b.bin"), "-O", join(dir, "b.bin"), "--no-progress"], { timeoutMs: 30_000 }), capped);
    assert.equal(r.code, 0, r.stderr);
    const ms = servedMs(capped, mark);
    t.diagnostic(`default 16 MiB/s: 32 MiB in ${ms} ms`);
    assertSeconds(ms, 2, "32 MiB at the default 16 MiB/s");

    origin.addRandomFile("/rl/c.bin", 32 * MiB, "rl-c");
    mark = capped.proc.logs.length;
    const fast = await explained(capped.get([origin.url("/rl/c.bin"), "-O", join(dir, "c.bin"), "--rate-limit", "64MiB", "--no-progress"], { timeoutMs: 30_000 }), capped);
    assert.equal(fast.code, 0, fast.stderr);
    const fastMs = servedMs(capped, mark);
    t.diagnostic(`--rate-limit 64MiB: 32 MiB in ${fastMs} ms`);
    assert.ok(fastMs < 1_000 * 1.15, `--rate-limit 64MiB should replace the 16 MiB/s default (0.5 s expected), took ${fastMs} ms`);
    // 0.1 s of the rate may be saved up before the first byte: >= 0.4 s.
    assert.ok(fastMs > 300, `32 MiB at 64 MiB/s took only ${fastMs} ms`);
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
    assertSeconds(r.ms, 2, "16 MiB at 8 MiB/s through the proxy");
  });
});
