// A real swarm on 127.0.0.1: one scheduler, a seed peer and three peer
// daemons share a 64 MiB file; the origin serves it about once, and later
// peers get it from the swarm alone once the origin is gone.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatBytes } from "../../src/cli/format.js";
import { taskId } from "../../src/common/task-id.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { getSummary, sha256File, storedMeta } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const PATH = "/swarm/blob-64m.bin";

describe("swarm: one seed, three peers, a 64 MiB file", { timeout: 120_000 }, () => {
  let origin: Origin;
  let cluster: Cluster;
  let url: string;
  let expected: string;
  let outDir: string;

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-swarm-out-"));
    origin = await startOrigin();
    expected = sha256Hex(origin.addRandomFile(PATH, SIZE, "swarm"));
    url = origin.url(PATH);
    cluster = await startCluster({ peers: 3, seed: true });
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("three concurrent gets: identical bytes, the origin serves the file about once", { timeout: 60_000 }, async (t) => {
    const results = await Promise.all(cluster.peers.map((p, i) => p.get([url, "-O", join(outDir, `out-${i}.bin`), "--no-progress"], { timeoutMs: 50_000 })));
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
    for (let i = 0; i < results.length; i++) {
      assert.equal(await sha256File(join(outDir, `out-${i}.bin`)), expected, `out-${i}.bin differs from the origin's bytes`);
    }
    const served = origin.bytesSent();
    assert.ok(served >= SIZE, `the origin served ${served} bytes, less than the file`);
    assert.ok(served <= 1.1 * SIZE, `the origin served ${served} bytes (${(served / SIZE).toFixed(2)} x the file); expected <= 1.1 x`);
    t.diagnostic(`origin served ${(served / MiB).toFixed(1)} MiB`);
    for (const r of results) t.diagnostic(getSummary(r.stderr)?.line ?? r.stderr);
    // The seed peer holds the finished task.
    const id = taskId({ url });
    const meta = storedMeta(cluster.seed!.dataDir, id);
    assert.ok(meta?.done, `the seed's task.json should say done: ${JSON.stringify(meta)}`);
    assert.equal(meta.contentLength, SIZE);
  });

  test("with the origin gone, new peers get the file from the swarm alone", { timeout: 60_000 }, async () => {
    await origin.close();
    const before = origin.bytesSent();

    const a = await cluster.addDaemon({ name: "late-a" });
    const ra = await a.get([url, "-O", join(outDir, "late-a.bin"), "--no-progress"], { timeoutMs: 50_000 });
    assert.equal(ra.code, 0, ra.stderr);
    assert.equal(await sha256File(join(outDir, "late-a.bin")), expected);
    const sa = getSummary(ra.stderr);
    assert.ok(sa, `no summary line in:\n${ra.stderr}`);
    assert.equal(sa.fromPeers, formatBytes(SIZE), sa.line);
    assert.equal(sa.fromOrigin, formatBytes(0), sa.line);

    const b = await cluster.addDaemon({ name: "late-b" });
    const rb = await b.get([url, "-O", join(outDir, "late-b.bin"), "--no-progress", "--disable-back-to-source"], { timeoutMs: 50_000 });
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(await sha256File(join(outDir, "late-b.bin")), expected);
    const sb = getSummary(rb.stderr);
    assert.ok(sb, `no summary line in:\n${rb.stderr}`);
    assert.equal(sb.fromPeers, formatBytes(SIZE), sb.line);
    assert.equal(sb.fromOrigin, formatBytes(0), sb.line);

    assert.equal(origin.bytesSent(), before, "nothing came from the (closed) origin");
  });
});
