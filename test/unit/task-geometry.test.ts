// A task's geometry is bounded, fixed after its first answer, and a parent's
// piece ads are checked against it before anything is written.
import { test } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { offerGeometry, pieceFits } from "../../src/peer/download/task-geometry.js";
import { storedTask } from "../helpers/store.js";
import { Storage } from "../../src/peer/storage/storage.js";
import { createLogger } from "../../src/common/logger.js";
import { tempDir } from "../helpers/store.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const MAX = 1024 * GiB;
const origin = { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 };

test("offerGeometry: out of bounds is refused; the first answer is the task's", async (t) => {
  const storage = new Storage(tempDir(t, "df-geo-"), createLogger("silent"));
  await storage.load();
  t.after(() => storage.close());
  const task = await storage.getOrCreate("a".repeat(64), origin);
  for (const [cl, pl] of [
    [16 * GiB, 16 * GiB],
    [2 * MiB, 64 * KiB],
    [2 * MiB, 128 * MiB],
    [2 * MAX, 4 * MiB],
    [-5, 4 * MiB],
    [1.5, 4 * MiB],
  ] as const) {
    assert.throws(() => offerGeometry(task, cl, pl, MAX), /DF_ERR_GEOMETRY_INVALID|length/, `${cl}/${pl}`);
  }
  // Unknown length, then the length with the same pieces.
  assert.equal(offerGeometry(task, -1, 4 * MiB, MAX), "new");
  await task.setInfo(-1, 4 * MiB);
  assert.equal(offerGeometry(task, -1, 4 * MiB, MAX), "same");
  assert.throws(() => offerGeometry(task, -1, 8 * MiB, MAX), /pieces of/);
  assert.equal(offerGeometry(task, 10 * MiB, 4 * MiB, MAX), "new");
  await task.setInfo(10 * MiB, 4 * MiB);
  assert.equal(offerGeometry(task, 10 * MiB, 4 * MiB, MAX), "same");
  assert.throws(() => offerGeometry(task, 10 * MiB, 64 * MiB, MAX), /pieces of/);
  assert.throws(() => offerGeometry(task, 11 * MiB, 4 * MiB, MAX), /pieces of/);
});

test("LocalTask.setInfo: a known geometry never changes, so a piece never moves and the file never grows", async (t) => {
  const { task } = await storedTask(t, "b".repeat(64), 2 * MiB, 512 * KiB, "df-geo-set-");
  await assert.rejects(task.setInfo(2 * MiB, 64 * MiB), /DF_ERR_GEOMETRY_INVALID|pieces of/);
  await assert.rejects(task.setInfo(64 * MiB, 512 * KiB), /DF_ERR_GEOMETRY_INVALID|pieces of/);
  assert.deepEqual([task.meta.contentLength, task.meta.pieceLength], [2 * MiB, 512 * KiB]);
  assert.equal(statSync(task.dataPath).size, 2 * MiB);
  // The same answer again is fine.
  await task.setInfo(2 * MiB, 512 * KiB);
});

test("pieceFits: an ad must be exactly its piece once the size is known, and within bounds before", async (t) => {
  const storage = new Storage(tempDir(t, "df-geo-fit-"), createLogger("silent"));
  await storage.load();
  t.after(() => storage.close());
  const task = await storage.getOrCreate("c".repeat(64), origin);
  // Nothing known: any piece up to 64 MiB within the maximum.
  assert.ok(pieceFits(task, MAX, 0, 64 * MiB));
  assert.ok(!pieceFits(task, MAX, 0, 65 * MiB));
  assert.ok(!pieceFits(task, MAX, 2 ** 40, MiB));
  assert.ok(!pieceFits(task, MAX, 0, 0));
  await task.setInfo(-1, MiB);
  assert.ok(pieceFits(task, MAX, 5, MiB));
  assert.ok(!pieceFits(task, MAX, 5, 2 * MiB));
  assert.ok(!pieceFits(task, 4 * MiB, 5, MiB), "past the maximum content length");
  await task.setInfo(2 * MiB + 5, MiB);
  assert.ok(pieceFits(task, MAX, 1, MiB));
  assert.ok(pieceFits(task, MAX, 2, 5));
  assert.ok(!pieceFits(task, MAX, 2, MiB), "the last piece is short");
  assert.ok(!pieceFits(task, MAX, 3, 5), "past the end");
  assert.ok(!pieceFits(task, MAX, 0, 64 * MiB));
});
