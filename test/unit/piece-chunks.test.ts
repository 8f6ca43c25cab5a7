// The proxy's chunked reader (src/peer/api/piece-chunks.ts) on a real task
// store: pieces larger than a chunk go out in chunks of at most CHUNK bytes
// (so a response's memory does not grow with the piece length), a stored
// piece that rotted is found by the chunked CRC pass and fetched again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { crc32Update } from "../../src/common/pieces.js";
import { Storage } from "../../src/peer/storage/storage.js";
import type { LocalTask } from "../../src/peer/storage/local-task.js";
import { CHUNK, readTaskChunks } from "../../src/peer/api/piece-chunks.js";
import { randomBytesSeeded } from "../helpers/origin.js";

const log = pino({ level: "silent" });
const origin = { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 };
const PIECE = CHUNK + CHUNK / 2;

async function putPiece(task: LocalTask, n: number, data: Buffer): Promise<void> {
  await task.writev(n * task.meta.pieceLength, [data]);
  await task.markPiece({ number: n, crc: crc32Update(data), length: data.length });
}

async function doneTask(t: { after(fn: () => void): void }, data: Buffer): Promise<{ s: Storage; task: LocalTask }> {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-chunks-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = new Storage(dir, log);
  await s.load();
  const task = await s.getOrCreate("c".repeat(64), origin);
  await task.setInfo(data.length, PIECE);
  for (let n = 0; n * PIECE < data.length; n++) await putPiece(task, n, data.subarray(n * PIECE, (n + 1) * PIECE));
  await task.markDone(true);
  return { s, task };
}

function pool() {
  const sizes = new Set<number>();
  return {
    sizes,
    get: (size: number) => {
      sizes.add(size);
      return Buffer.alloc(size);
    },
    put: () => undefined,
  };
}

test("pieces larger than a chunk are read and sent in chunks of at most CHUNK bytes", async (t) => {
  const data = randomBytesSeeded(2 * PIECE + 1000, "chunks");
  const { s, task } = await doneTask(t, data);
  const p = pool();
  const out: Buffer[] = [];
  const restart = async () => assert.fail("nothing is corrupt");
  for await (const b of readTaskChunks(task, new AbortController().signal, restart, 1000, data.length - 5, p)) out.push(Buffer.from(b));
  assert.ok(Buffer.concat(out).equals(data.subarray(1000, data.length - 5)));
  assert.ok(Math.max(...out.map((b) => b.length)) <= CHUNK, `largest chunk ${Math.max(...out.map((b) => b.length))}`);
  assert.deepEqual([...p.sizes], [CHUNK]);
  await s.close();
});

test("a large stored piece that rotted is caught by the chunked CRC pass and fetched again", async (t) => {
  const data = randomBytesSeeded(2 * PIECE, "rot");
  const { s, task } = await doneTask(t, data);
  const fd = openSync(task.dataPath, "r+");
  writeSync(fd, Buffer.from([data[PIECE + CHUNK + 7]! ^ 0xff]), 0, 1, PIECE + CHUNK + 7);
  closeSync(fd);
  let restarts = 0;
  const restart = async () => {
    restarts++;
    assert.equal(task.pieces.has(1), false, "the corrupt piece was dropped first");
    await putPiece(task, 1, data.subarray(PIECE));
  };
  const out: Buffer[] = [];
  for await (const b of readTaskChunks(task, new AbortController().signal, restart, 0, data.length, pool())) out.push(Buffer.from(b));
  assert.equal(restarts, 1);
  assert.ok(Buffer.concat(out).equals(data));
  await s.close();
});
