// Bit rot on a parent: a byte flipped in the seed peer's stored data is caught
// by the seed's CRC-32 check when it serves the piece, the piece is dropped and
// never handed on, and the child still ends up with the origin's exact bytes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, openSync, closeSync, readSync, writeSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { taskId } from "../../src/common/task-id.js";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { pieceLengthFor } from "../../src/common/pieces.js";
import { explained, pollUntil, sha256File, storedMeta, storedPieces, taskDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
// The piece length the origin-fetching peer picks for this size.
const PIECE = pieceLengthFor(SIZE);
const BAD_PIECE = 5;
const CRC_MSG = "stored piece failed CRC-32 check; not served, dropped";

// Flips one byte of a stored task's data file in place (same inode, as bit
// rot would), inside piece `n`.
function flipByte(d: DaemonHandle, id: string, n: number, within = 123_457): void {
  const file = join(taskDir(d.dataDir, id), "data");
  const fd = openSync(file, "r+");
  try {
    const pos = n * PIECE + within;
    const b = Buffer.alloc(1);
    assert.equal(readSync(fd, b, 0, 1, pos), 1);
    b[0] = b[0]! ^ 0xff;
    assert.equal(writeSync(fd, b, 0, 1, pos), 1);
  } finally {
    closeSync(fd);
  }
}

// GET one piece straight from a daemon's upload server, as a child would.
// Resolves with the status, the bytes received and whether the body completed.
function fetchPieceDirect(d: DaemonHandle, id: string, n: number): Promise<{ status: number; received: number; complete: boolean }> {
  const [host, port] = [d.upload.slice(0, d.upload.lastIndexOf(":")), Number(d.upload.slice(d.upload.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: `/v1/tasks/${id}/pieces/${n}`, timeout: 15_000 }, (res) => {
      let received = 0;
      res.on("data", (c: Buffer) => (received += c.length));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, received, complete: res.complete }));
      res.on("error", () => resolve({ status: res.statusCode ?? 0, received, complete: false }));
      res.on("aborted", () => resolve({ status: res.statusCode ?? 0, received, complete: false }));
    });
    req.on("timeout", () => req.destroy(new Error("piece request timed out")));
    // A piece that fits in one read is checked before its first byte goes
    // out: the seed then closes the connection without an answer.
    req.on("error", (e: NodeJS.ErrnoException) => (e.code === "ECONNRESET" ? resolve({ status: 0, received: 0, complete: false }) : reject(e)));
  });
}

const crcLines = (d: DaemonHandle, id: string) => d.proc.logs.filter((l) => l.msg === CRC_MSG && l.taskId === id);

describe("integrity: a corrupt stored piece on the seed", { timeout: 150_000 }, () => {
  let origin: Origin;
  let cluster: Cluster;
  let outDir: string;

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-integrity-out-"));
    origin = await startOrigin();
    // Seed-first: the seed fetches the task and holds the copy that rots.
    cluster = await startCluster({ peers: 1, seed: true, schedulerArgs: ["--cold-start", "seed"] });
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  // peer-0's get makes the scheduler trigger the seed: afterwards both hold
  // the finished task.
  async function warm(path: string, seed: string): Promise<{ url: string; id: string; expected: string }> {
    const expected = sha256Hex(origin.addRandomFile(path, SIZE, seed));
    const url = origin.url(path);
    const id = taskId({ url });
    const r = await cluster.peers[0]!.get([url, "-O", join(outDir, `warm-${seed}.bin`), "--no-progress"], { timeoutMs: 40_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(outDir, `warm-${seed}.bin`)), expected);
    await pollUntil(() => storedMeta(cluster.seed!.dataDir, id)?.done, "the seed to finish the task", 20_000);
    assert.equal(storedPieces(cluster.seed!.dataDir, id).size, SIZE / PIECE);
    return { url, id, expected };
  }

  test("seed and a peer hold the task; the seed's copy of piece 5 rots; a new peer gets intact bytes", { timeout: 60_000 }, async (t) => {
    const { url, id, expected } = await warm("/integrity/two-holders.bin", "two-holders");
    const seed = cluster.seed!;
    flipByte(seed, id, BAD_PIECE);

    const fresh = await cluster.addDaemon({ name: "fresh-1" });
    const out = join(outDir, "fresh-1.bin");
    const r = await explained(fresh.get([url, "-O", out, "--no-progress"], { timeoutMs: 45_000 }), fresh, seed);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), expected, "the new peer's output must equal the origin's bytes");

    // The new peer may have taken piece 5 from peer-0 rather than the seed.
    // Either way, the seed must never serve the rotten piece whole: ask for
    // it directly if nobody did.
    const servedByChild = crcLines(seed, id).length > 0;
    if (!servedByChild) {
      const direct = await fetchPieceDirect(seed, id, BAD_PIECE);
      assert.ok(!(direct.status === 200 && direct.complete && direct.received === PIECE), `the seed served the corrupt piece whole: ${JSON.stringify(direct)}`);
    }
    const line = await seed.proc.waitForLog(CRC_MSG, 5_000, (l) => l.taskId === id);
    assert.equal(line.piece, BAD_PIECE, JSON.stringify(line));
    // The piece the new peer stored is the good one.
    const got = storedPieces(fresh.dataDir, id);
    assert.equal(got.size, SIZE / PIECE);
    const goodCrc = storedPieces(cluster.peers[0]!.dataDir, id).get(BAD_PIECE)!.crc;
    assert.equal(got.get(BAD_PIECE)!.crc, goodCrc);
    // The seed dropped the rotten piece ("-5" in its log) and repaired itself.
    await seed.proc.waitForLog("repairing task", 5_000, (l) => l.taskId === id);
    assert.ok(
      readFileSync(join(taskDir(seed.dataDir, id), "pieces.log"), "utf8")
        .split("\n")
        .includes(`-${BAD_PIECE}`),
      "the seed must drop the rotten piece",
    );
    await pollUntil(() => storedPieces(seed.dataDir, id).get(BAD_PIECE)?.crc === goodCrc, "the seed to store a good piece 5 again", 10_000);
    t.diagnostic(`two holders: seed served piece ${BAD_PIECE} to the new peer: ${servedByChild}; ${r.stderr.trim().split("\n").pop()}`);
  });

  test("only the seed holds the task and its piece 5 rots; with the origin up a new peer still gets intact bytes", { timeout: 60_000 }, async (t) => {
    const { url, id, expected } = await warm("/integrity/seed-only.bin", "seed-only");
    const seed = cluster.seed!;
    // Make the seed the only holder: peer-0 leaves the swarm.
    assert.equal(await cluster.stopDaemon(cluster.peers[0]!), 0);
    flipByte(seed, id, BAD_PIECE);
    const originBefore = origin.bytesSent();

    const fresh = await cluster.addDaemon({ name: "fresh-2" });
    const out = join(outDir, "fresh-2.bin");
    const r = await explained(fresh.get([url, "-O", out, "--no-progress"], { timeoutMs: 45_000 }), fresh, seed);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), expected, "the new peer's output must equal the origin's bytes");
    const line = await seed.proc.waitForLog(CRC_MSG, 5_000, (l) => l.taskId === id);
    assert.equal(line.piece, BAD_PIECE);
    const fromOrigin = origin.bytesSent() - originBefore;
    assert.ok(fromOrigin > 0, "the good piece 5 can only have come from the origin");
    t.diagnostic(`seed only: origin sent ${fromOrigin} bytes for the repair; ${r.stderr.trim().split("\n").pop()}`);
  });
});
