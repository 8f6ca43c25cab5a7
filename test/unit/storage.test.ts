// The task store on a real file system: persistence across restarts, crash
// tolerance of the piece log, corrupt-piece detection, path safety and the
// bound on open files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync, appendFileSync, openSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { crc32Update } from "../../src/common/pieces.js";
import { Storage } from "../../src/peer/storage/storage.js";
import { LocalTask } from "../../src/peer/storage/local-task.js";

const log = pino({ level: "silent" });
const ID = "a".repeat(64);
const origin = { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 };

function tempStore(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function putPiece(task: LocalTask, n: number, data: Buffer): Promise<void> {
  await task.writev(n * task.meta.pieceLength, [data]);
  await task.markPiece({ number: n, crc: crc32Update(data), length: data.length });
}

test("finished tasks come back after a restart; partial ones keep their pieces", async (t) => {
  const dir = tempStore(t);
  const a = new Storage(dir, log);
  await a.load();
  const done = await a.getOrCreate(ID, origin);
  await done.setInfo(8, 4);
  await putPiece(done, 0, Buffer.from("abcd"));
  await putPiece(done, 1, Buffer.from("efgh"));
  await done.markDone(true);
  const partialId = "b".repeat(64);
  const partial = await a.getOrCreate(partialId, origin);
  await partial.setInfo(8, 4);
  await putPiece(partial, 1, Buffer.from("wxyz"));
  await a.close();

  const b = new Storage(dir, log);
  await b.load();
  const d2 = b.get(ID)!;
  assert.ok(d2.done && d2.isComplete());
  assert.equal(d2.verified, false, "data from an earlier run is re-checked before use");
  assert.equal((await d2.readVerifiedPiece(1)).toString(), "efgh");
  const p2 = b.get(partialId)!;
  assert.equal(p2.done, false);
  assert.deepEqual(p2.missingPieces(), [0]);
  await b.close();
});

test("a piece log cut short by a crash loses only the unfinished line", () => {
  const pieces = LocalTask.parseLog("0 123 4\n1 456 4\n-0\n2 78");
  assert.deepEqual([...pieces.keys()], [1]);
});

test("a stored piece that rotted is detected and dropped", async (t) => {
  const dir = tempStore(t);
  const s = new Storage(dir, log);
  await s.load();
  const task = await s.getOrCreate(ID, origin);
  await task.setInfo(8, 4);
  await putPiece(task, 0, Buffer.from("abcd"));
  await putPiece(task, 1, Buffer.from("efgh"));
  await task.markDone(true);
  const fd = openSync(task.dataPath, "r+");
  writeSync(fd, Buffer.from("X"), 0, 1, 5);
  closeSync(fd);
  await assert.rejects(task.readVerifiedPiece(1), { code: "DF_ERR_PIECE_CORRUPT" });
  assert.equal(task.pieces.has(1), false);
  assert.equal(task.done, false);
  assert.equal((await task.readVerifiedPiece(0)).toString(), "abcd");
  await s.close();
});

test("only 64-hex task ids name a directory; junk in the store is skipped", async (t) => {
  const dir = tempStore(t);
  const s = new Storage(dir, log);
  await s.load();
  await assert.rejects(s.getOrCreate("../../etc", origin), { code: "DF_ERR_INVALID_REQUEST" });
  await assert.rejects(s.getOrCreate("A".repeat(64), origin), { code: "DF_ERR_INVALID_REQUEST" });
  writeFileSync(join(dir, "tasks", "stray"), "x");
  appendFileSync(join(dir, "tasks", "notes.txt"), "x");
  await s.close();
  const again = new Storage(dir, log);
  await again.load();
  assert.equal(again.get("../../etc"), undefined);
  await again.close();
});

test("the store keeps a bounded number of task files open", async (t) => {
  const dir = tempStore(t);
  const s = new Storage(dir, log);
  await s.load();
  const before = readdirSync("/proc/self/fd").length;
  for (let i = 0; i < 400; i++) {
    const task = await s.getOrCreate(i.toString(16).padStart(64, "0"), origin);
    await task.setInfo(4, 4);
    await putPiece(task, 0, Buffer.from("abcd"));
  }
  const opened = readdirSync("/proc/self/fd").length - before;
  assert.ok(opened <= 260, `${opened} descriptors left open for 400 tasks`);
  // A task whose file was closed reopens on demand.
  const first = s.get("0".repeat(64))!;
  assert.equal((await first.readVerifiedPiece(0)).toString(), "abcd");
  await s.close();
});
