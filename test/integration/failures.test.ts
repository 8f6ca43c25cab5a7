// Failures with real processes: parents killed mid-download, a daemon killed
// and restarted on its data dir, an unreachable scheduler, an origin 404
// behind a seed peer.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { taskId } from "../../src/common/task-id.js";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { runGet, spawnDamselfly, type Cleanup, type RunResult, closedPort, loopbackDaemonArgs } from "../helpers/procs.js";
import { pieceLengthFor } from "../../src/common/pieces.js";
import { explained, getSummary, logTail, pollUntil, sha256File, storedMeta, storedPieces, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
// The piece length the origin-fetching peer picks for this size.
const PIECE = pieceLengthFor(SIZE);
const PIECES = SIZE / PIECE;

async function originFor(t: Cleanup): Promise<Origin> {
  const origin = await startOrigin();
  t.after(() => origin.close());
  return origin;
}

function assertOk(r: RunResult, ...daemons: DaemonHandle[]): void {
  assert.equal(r.code, 0, `${r.stderr}\n${daemons.map((d) => logTail(d)).join("\n")}`);
}

describe("failures: a parent killed with SIGKILL mid-download", { timeout: 120_000 }, () => {
  test("killing the seed peer does not fail its children", { timeout: 60_000 }, async (t) => {
    const origin = await originFor(t);
    const out = tempDir(t, "damselfly-kill-seed-");
    // About 5 s for the whole file from the origin.
    const data = origin.addRandomFile("/kill/seed.bin", SIZE, "kill-seed", { throttle: Math.round(SIZE / 5) });
    const expected = sha256Hex(data);
    const url = origin.url("/kill/seed.bin");
    const id = taskId({ url });
    const cluster = await startCluster({ peers: 2, seed: true, t });
    const [a, b] = cluster.peers as [DaemonHandle, DaemonHandle];
    const seed = cluster.seed!;

    const ga = explained(a.get([url, "-O", join(out, "a.bin"), "--no-progress"], { timeoutMs: 45_000 }), a, b);
    const gb = explained(b.get([url, "-O", join(out, "b.bin"), "--no-progress"], { timeoutMs: 45_000 }), a, b);
    ga.catch(() => undefined);
    gb.catch(() => undefined);
    // Pieces flowing: the seed has a few from the origin and children have
    // started taking them.
    await pollUntil(
      () => storedPieces(seed.dataDir, id).size >= 3 && storedPieces(a.dataDir, id).size + storedPieces(b.dataDir, id).size >= 1,
      "pieces flowing from the seed to its children",
      30_000,
    );
    const seedHad = storedPieces(seed.dataDir, id).size;
    assert.ok(seedHad < PIECES, "the seed should still be downloading when killed");
    await cluster.stopDaemon(seed, "SIGKILL");
    assert.equal(seed.proc.signalCode, "SIGKILL");

    const [ra, rb] = await Promise.all([ga, gb]);
    assertOk(ra, a, b);
    assertOk(rb, a, b);
    assert.equal(await sha256File(join(out, "a.bin")), expected, "a.bin differs from the origin's bytes");
    assert.equal(await sha256File(join(out, "b.bin")), expected, "b.bin differs from the origin's bytes");
    t.diagnostic(`seed had ${seedHad}/${PIECES} pieces when killed; origin sent ${(origin.bytesSent() / MiB).toFixed(1)} MiB`);
    t.diagnostic(getSummary(ra.stderr)?.line ?? "");
    t.diagnostic(getSummary(rb.stderr)?.line ?? "");
  });

  test("killing a normal peer that another peer uses as its parent does not fail the child", { timeout: 60_000 }, async (t) => {
    const origin = await originFor(t);
    const out = tempDir(t, "damselfly-kill-peer-");
    const data = origin.addRandomFile("/kill/peer.bin", SIZE, "kill-peer", { throttle: Math.round(SIZE / 5) });
    const expected = sha256Hex(data);
    const url = origin.url("/kill/peer.bin");
    const id = taskId({ url });
    // No seed: the first peer goes to the origin and is the second's parent.
    const cluster = await startCluster({ peers: 2, seed: false, t });
    const [a, b] = cluster.peers as [DaemonHandle, DaemonHandle];

    const ga = a.get([url, "-O", join(out, "a.bin"), "--no-progress"], { timeoutMs: 50_000 });
    ga.catch(() => undefined);
    await pollUntil(() => storedPieces(a.dataDir, id).size >= 1, "peer A's first piece from the origin", 30_000);
    const gb = explained(b.get([url, "-O", join(out, "b.bin"), "--no-progress"], { timeoutMs: 45_000 }), b);
    gb.catch(() => undefined);
    await pollUntil(() => storedPieces(b.dataDir, id).size >= 2, "peer B's first pieces from peer A", 30_000);
    const aHad = storedPieces(a.dataDir, id).size;
    assert.ok(aHad < PIECES, "peer A should still be downloading when killed");
    await cluster.stopDaemon(a, "SIGKILL");

    const ra = await ga;
    assert.notEqual(ra.code, 0, "the killed daemon's own get cannot succeed");
    const rb = await gb;
    assertOk(rb, b);
    assert.equal(await sha256File(join(out, "b.bin")), expected, "b.bin differs from the origin's bytes");
    const s = getSummary(rb.stderr);
    assert.ok(s, rb.stderr);
    assert.notEqual(s.fromPeers, "0 B", `B should have had pieces from A before it died: ${s.line}`);
    t.diagnostic(`A had ${aHad}/${PIECES} pieces when killed; ${s.line}`);
  });
});

describe("failures: a daemon killed mid-download resumes after a restart", { timeout: 90_000 }, () => {
  test("finished pieces are not fetched from the origin again", { timeout: 60_000 }, async (t) => {
    const origin = await originFor(t);
    const out = tempDir(t, "damselfly-resume-");
    const path = "/resume/blob.bin";
    const data = origin.addRandomFile(path, SIZE, "resume", { throttle: Math.round(SIZE / 6) });
    const expected = sha256Hex(data);
    const url = origin.url(path);
    const id = taskId({ url });
    const cluster = await startCluster({ peers: 1, seed: false, t });
    const peer = cluster.peers[0]!;

    const first = peer.get([url, "-O", join(out, "first.bin"), "--no-progress"], { timeoutMs: 50_000 });
    first.catch(() => undefined);
    await pollUntil(() => storedPieces(peer.dataDir, id).size >= 4, "4 finished pieces in pieces.log", 30_000);
    await cluster.stopDaemon(peer, "SIGKILL");
    const r1 = await first;
    assert.notEqual(r1.code, 0, "the get whose daemon was killed cannot succeed");
    const finished = storedPieces(peer.dataDir, id);
    assert.ok(finished.size >= 4 && finished.size < PIECES, `finished pieces: ${finished.size}`);
    const meta = storedMeta(peer.dataDir, id);
    assert.equal(meta?.contentLength, SIZE);
    assert.equal(meta?.done, false);

    // Once the origin noticed the dropped connection, count afresh; the
    // second run need not be slow.
    await pollUntil(() => origin.inFlight() === 0, "the origin to notice the killed daemon's connection", 10_000);
    origin.addFile(path, data);
    origin.resetStats();

    const again = await cluster.addDaemon({ name: "peer-0-restarted", dataDir: peer.dataDir });
    const loaded = await again.proc.waitForLog("storage loaded");
    assert.equal(loaded.tasks, 1, JSON.stringify(loaded));
    const r2 = await explained(again.get([url, "-O", join(out, "second.bin"), "--no-progress"], { timeoutMs: 45_000 }), again);
    assertOk(r2, again);
    assert.equal(await sha256File(join(out, "second.bin")), expected, "second.bin differs from the origin's bytes");

    const missing = SIZE - finished.size * PIECE;
    const sent = origin.bytesSent(path);
    assert.ok(sent >= missing, `the origin sent ${sent} bytes, less than the ${missing} missing`);
    assert.ok(sent <= missing + PIECE, `the origin sent ${sent} bytes in the second run; only ${missing} (+1 piece of slack) were missing`);
    for (const req of origin.requests)
      if (req.method === "GET") assert.ok(req.range, `a full-body GET after resume: ${JSON.stringify({ url: req.url, range: req.range })}`);
    const s = getSummary(r2.stderr);
    assert.ok(s, r2.stderr);
    t.diagnostic(`${finished.size}/${PIECES} pieces kept across the restart; origin sent ${sent} bytes; ${s.line}`);
  });
});

describe("failures: scheduler unreachable", { timeout: 60_000 }, () => {
  test("the daemon downloads from the origin; with --disable-back-to-source get exits 5", { timeout: 45_000 }, async (t) => {
    const origin = await originFor(t);
    const dir = mkdtempSync(join(tmpdir(), "damselfly-nosched-"));
    const port = await closedPort();
    const daemon = spawnDamselfly(["daemon", ...loopbackDaemonArgs(`127.0.0.1:${port}`, join(dir, "data"))], { t, name: "daemon-nosched" });
    // Registered after the daemon's own cleanup: removed once it is gone.
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const ready = await daemon.waitForLog("daemon ready", 20_000);
    const api = `http://${String(ready.api)}`;

    const data = origin.addRandomFile("/nosched/a.bin", 5 * MiB + 17, "nosched-a");
    const r = await runGet([origin.url("/nosched/a.bin"), "-O", join(dir, "a.bin"), "--no-progress", "--daemon", api], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `${r.stderr}\n${daemon.stderr().slice(-3000)}`);
    assert.equal(await sha256File(join(dir, "a.bin")), sha256Hex(data));
    await daemon.waitForLog("scheduler unreachable: downloading directly from the origin", 2_000);
    assert.match(r.stderr, /scheduler unreachable: downloaded from origin/);

    origin.addRandomFile("/nosched/b.bin", 1 * MiB, "nosched-b");
    const bytesBefore = origin.bytesSent();
    const rb = await runGet([origin.url("/nosched/b.bin"), "-O", join(dir, "b.bin"), "--no-progress", "--disable-back-to-source", "--daemon", api], {
      timeoutMs: 30_000,
    });
    assert.equal(rb.code, 5, rb.stderr);
    assert.match(rb.stderr, /^damselfly get: DF_ERR_SCHEDULER_UNAVAILABLE: /m);
    assert.equal(origin.bytesSent(), bytesBefore, "nothing fetched from the origin with back-to-source disabled");
  });
});

describe("failures: origin 404 through a seed peer", { timeout: 60_000 }, () => {
  test("get exits 4 with the status, without waiting for a timeout", { timeout: 45_000 }, async (t) => {
    const origin = await originFor(t);
    const dir = tempDir(t, "damselfly-404-");
    // The seed wait is far off: only the seed's report can end the get soon.
    const cluster = await startCluster({ peers: 1, seed: true, t, schedulerArgs: ["--seed-wait", "60s"] });
    const url = origin.url(`/missing/${process.pid}-${Date.now()}.bin`);
    const r = await explained(
      cluster.peers[0]!.get([url, "-O", join(dir, "out.bin"), "--no-progress"], { timeoutMs: 40_000 }),
      cluster.peers[0]!,
      cluster.seed!,
    );
    assert.equal(r.code, 4, `${r.stderr}\n${logTail(cluster.peers[0]!)}\n${logTail(cluster.seed!)}`);
    assert.match(r.stderr, /^damselfly get: DF_ERR_SOURCE_STATUS: .*\b404\b/m);
    // The seed went to the origin and passed the failure on: the peer did not
    // sit out the scheduler's seed wait (60 s here) or a piece timeout (30 s).
    assert.ok(r.elapsedMs < 25_000, `took ${r.elapsedMs} ms: the failure was not propagated promptly`);
    assert.ok(
      origin.requests.some((q) => q.status === 404),
      "the origin was asked and answered 404",
    );
    t.diagnostic(`404 reported after ${r.elapsedMs} ms`);
  });
});
