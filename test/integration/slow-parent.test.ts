// A parent far slower than the others is dropped. The slow parent is a
// stand-in host this test announces to the real scheduler: it speaks the
// piece data plane (sync stream + pieces, correct bytes and CRCs) but sends
// at 1 MiB/s, while the real seed serves at loopback speed.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { crc32Update, pieceCount, pieceLengthFor } from "../../src/common/pieces.js";
import { taskId } from "../../src/common/task-id.js";
import { createRpcTransport, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { startCluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { sha256File } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

function slowParent(data: Buffer, id: string, bytesPerSecond: number): http.Server {
  const pl = pieceLengthFor(data.length);
  const pieces: Array<[number, number, number]> = [];
  for (let n = 0; n < pieceCount(data.length, pl); n++) {
    const chunk = data.subarray(n * pl, Math.min(data.length, (n + 1) * pl));
    pieces.push([n, crc32Update(chunk), chunk.length]);
  }
  return http.createServer((req, res) => {
    // Children add ?peer=ID (for a seed's suggestions); a plain parent ignores it.
    const path = (req.url ?? "").split("?")[0];
    if (path === `/v1/tasks/${id}/sync`) {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(JSON.stringify({ type: "info", contentLength: data.length, pieceLength: pl }) + "\n");
      res.write(JSON.stringify({ type: "pieces", pieces }) + "\n");
      res.end(JSON.stringify({ type: "done" }) + "\n");
      return;
    }
    const m = new RegExp(`^/v1/tasks/${id}/pieces/(\\d+)$`).exec(path ?? "");
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const n = Number(m[1]);
    const body = data.subarray(n * pl, Math.min(data.length, (n + 1) * pl));
    res.writeHead(200, { "content-length": body.length });
    const step = 64 * 1024;
    let off = 0;
    const timer = setInterval(
      () => {
        if (res.destroyed || off >= body.length) {
          clearInterval(timer);
          if (!res.destroyed) res.end();
          return;
        }
        res.write(body.subarray(off, off + step));
        off += step;
      },
      (1000 * step) / bytesPerSecond,
    );
    res.on("close", () => clearInterval(timer));
  });
}

test("a parent far slower than the others is dropped and the download finishes from the fast one", { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-slow-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const origin = await startOrigin();
  t.after(() => origin.close());
  const data = origin.addRandomFile("/slow/blob.bin", SIZE, "slow");
  const url = origin.url("/slow/blob.bin");
  const id = taskId({ url });
  const cluster = await startCluster({ peers: 1, seed: true, t, schedulerArgs: ["--cold-start", "seed"] });

  // Warm the seed, then take the origin away: the pieces can only come from
  // the seed or the slow stand-in.
  const warm = await cluster.peers[0]!.get([url, "-O", join(dir, "warm.bin"), "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(warm.code, 0, warm.stderr);
  await cluster.stopDaemon(cluster.peers[0]!);
  await origin.close();

  const fake = slowParent(data, id, 1 * MiB);
  fake.listen(0, "127.0.0.1");
  await once(fake, "listening");
  t.after(() => {
    fake.closeAllConnections();
    fake.close();
  });
  const port = (fake.address() as { port: number }).port;
  const scheduler = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
  const hostId = "slow-stand-in";
  await scheduler.announceHost({
    host: { id: hostId, hostname: hostId, ip: "127.0.0.1", uploadPort: port, apiPort: 1, type: HostType.NORMAL, uploadSlots: 100 },
    intervalSeconds: 60,
  });
  const pl = pieceLengthFor(SIZE);
  await scheduler.announceCachedTasks({
    hostId,
    tasks: [{ taskId: id, peerId: "slow-stand-in-peer", contentLength: BigInt(SIZE), pieceLength: BigInt(pl), totalPieces: pieceCount(SIZE, pl) }],
  });

  const fresh = await cluster.addDaemon({ name: "fresh" });
  const out = join(dir, "out.bin");
  const r = await fresh.get([url, "-O", out, "--no-progress", "--disable-back-to-source"], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await sha256File(out), sha256Hex(data));
  const dropped = fresh.proc.logs.find((l) => l.msg === "parent dropped" && l.parent === "slow-stand-in-peer");
  assert.ok(dropped, `the slow parent was never dropped; logs:\n${fresh.proc.stderr().slice(-3000)}`);
  assert.match(String(dropped.reason), /^slow parent/);
});
