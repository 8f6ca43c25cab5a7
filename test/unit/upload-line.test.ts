// The piece server's upload slots on a real socket (127.0.0.1): requests
// beyond the slots wait in line and are served in turn instead of bouncing;
// only a line longer than 4 per slot gets 503 DF_ERR_UPLOAD_BUSY.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { request } from "undici";
import { crc32Update } from "../../src/common/pieces.js";
import { UploadServer } from "../../src/peer/upload/upload-server.js";
import { pollUntil, storedTask } from "../helpers/store.js";

const log = pino({ level: "silent" });
const ID = "b".repeat(64);
// Bigger than what the kernel's socket buffers and undici absorb on loopback
// (~10 MB), so an unread response keeps its slot taken.
const PIECE = 16 * 1024 * 1024;

test("with 1 upload slot, 5 parallel piece requests are all served (4 waited in line); a 6th gets 503 busy", async (t) => {
  const { storage, task } = await storedTask(t, ID, PIECE * 6, PIECE, "damselfly-upload-line-");
  for (let n = 0; n < 6; n++) {
    const data = Buffer.alloc(PIECE, n);
    await task.writev(n * PIECE, [data]);
    await task.markPiece({ number: n, crc: crc32Update(data), length: data.length });
  }
  const server = new UploadServer({ listen: "127.0.0.1:0", storage, logger: log, uploadConcurrency: 1 });
  await server.start();
  t.after(() => server.close());
  const base = `http://127.0.0.1:${server.address.port}/v1/tasks/${ID}/pieces/`;
  const fetchPiece = async (n: number) => {
    const res = await request(base + n);
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return { status: res.statusCode, body: Buffer.concat(chunks), error: res.headers["x-damselfly-error"] };
  };
  const first = await request(base + 0);
  // The slot is now held by piece 0's response until its body is read.
  const waiting = [1, 2, 3, 4].map((n) => fetchPiece(n));
  // Each request holds the task from its arrival, waiting in line included.
  await pollUntil(() => task.inUse >= 5, "4 requests waiting in line", 10_000, 10);
  const bounced = await fetchPiece(5);
  assert.equal(bounced.status, 503, "the line is full (4 per slot): the 6th is told busy");
  assert.equal(bounced.error, "DF_ERR_UPLOAD_BUSY");
  const body0: Buffer[] = [];
  for await (const c of first.body) body0.push(c as Buffer);
  assert.ok(Buffer.concat(body0).equals(Buffer.alloc(PIECE, 0)));
  const served = await Promise.all(waiting);
  served.forEach((r, i) => {
    assert.equal(r.status, 200, `piece ${i + 1} waited in line and was served`);
    assert.ok(r.body.equals(Buffer.alloc(PIECE, i + 1)), `piece ${i + 1} bytes`);
  });
  assert.equal(server.stats.busy, 1);
  assert.equal(server.stats.pieces, 5);
  assert.equal(server.stats.active, 0);
});
