// The disk GC over a real store: watermarks evict least recently used idle
// tasks down to the low mark, held tasks are kept, TTL, explicit prunes, and
// watermark parsing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { crc32Update } from "../../src/common/pieces.js";
import { parseWatermark, watermarkBytes } from "../../src/common/watermark.js";
import { Storage } from "../../src/peer/storage/storage.js";
import { DiskGc } from "../../src/peer/storage/gc.js";
import type { LocalTask } from "../../src/peer/storage/local-task.js";

const log = pino({ level: "silent" });
const KiB = 1024;
const origin = { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 };

async function store(t: { after(fn: () => void): void }): Promise<Storage> {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-gc-"));
  const s = new Storage(dir, log);
  t.after(async () => {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await s.load();
  return s;
}

// A finished task of `size` bytes last accessed at `at`.
async function task(s: Storage, n: number, size: number, at: number): Promise<LocalTask> {
  const t = await s.getOrCreate(String(n).repeat(64).slice(0, 64), origin);
  await t.setInfo(size, size);
  const data = Buffer.alloc(size, n);
  await t.writev(0, [data]);
  await t.markPiece({ number: 0, crc: crc32Update(data), length: size });
  await t.markDone(true);
  t.meta.lastAccessAt = at;
  return t;
}

function gc(s: Storage, o: Partial<{ high: string; low: string; ttl: number }> = {}): DiskGc {
  return new DiskGc({
    storage: s,
    logger: log,
    taskTtlMs: o.ttl ?? 0,
    intervalMs: 0,
    high: parseWatermark(o.high ?? "0"),
    low: parseWatermark(o.low ?? "0"),
    remove: (v) => s.evict(v, undefined, true),
  });
}

test("over the high watermark, idle tasks go least recently used first until under the low one", async (t) => {
  const s = await store(t);
  const now = Date.now();
  const [a, b, c, d] = [
    await task(s, 1, 256 * KiB, now - 4000),
    await task(s, 2, 256 * KiB, now - 1000),
    await task(s, 3, 256 * KiB, now - 3000),
    await task(s, 4, 256 * KiB, now - 2000),
  ];
  const g = gc(s, { high: "900KiB", low: "600KiB" });
  const { total } = await g.usage();
  assert.ok(total >= 1024 * KiB && total < 1100 * KiB, String(total));
  const r = await g.pass("test");
  assert.deepEqual(r.evicted, [a.id, c.id]);
  assert.ok(r.freedBytes >= 512 * KiB);
  assert.deepEqual(
    s
      .all()
      .map((x) => x.id)
      .sort(),
    [b.id, d.id].sort(),
  );
  assert.equal(a.removed, true);
  // Under the high watermark: nothing more.
  assert.deepEqual((await g.pass("test")).evicted, []);
});

test("a held task is skipped and counted; the next oldest goes instead", async (t) => {
  const s = await store(t);
  const now = Date.now();
  const a = await task(s, 1, 256 * KiB, now - 4000);
  const b = await task(s, 2, 256 * KiB, now - 3000);
  const c = await task(s, 3, 256 * KiB, now - 2000);
  a.retain();
  const g = gc(s, { high: "600KiB", low: "300KiB" });
  const r = await g.pass("test");
  assert.deepEqual(r.evicted, [b.id, c.id]);
  assert.equal(r.skippedInUse, 1);
  assert.deepEqual((await g.pass("prune", { all: true })).skippedInUse, 1);
  a.release();
  assert.deepEqual((await g.pass("prune", { all: true })).evicted, [a.id]);
});

test("TTL, --older-than and --to", async (t) => {
  const s = await store(t);
  const now = Date.now();
  const old = await task(s, 1, 128 * KiB, now - 60_000);
  const mid = await task(s, 2, 128 * KiB, now - 20_000);
  const fresh = await task(s, 3, 128 * KiB, now);
  assert.deepEqual((await gc(s, { ttl: 30_000 }).pass("test")).evicted, [old.id]);
  assert.deepEqual((await gc(s).pass("prune", { olderThanMs: 10_000 })).evicted, [mid.id]);
  assert.deepEqual((await gc(s).pass("prune", { toBytes: 1 })).evicted, [fresh.id]);
  assert.deepEqual(s.all(), []);
});

test("a task's own TTL (cache import --ttl) replaces the policy's, even when the policy has none", async (t) => {
  const s = await store(t);
  const now = Date.now();
  const kept = await task(s, 1, 128 * KiB, now - 60_000);
  await kept.setTtl(3_600_000);
  const short = await task(s, 2, 128 * KiB, now - 20_000);
  await short.setTtl(10_000);
  const plain = await task(s, 3, 128 * KiB, now - 60_000);
  assert.deepEqual((await gc(s, { ttl: 30_000 }).pass("test")).evicted.sort(), [short.id, plain.id].sort());
  const again = await task(s, 4, 128 * KiB, now - 20_000);
  await again.setTtl(10_000);
  assert.deepEqual((await gc(s).pass("test")).evicted, [again.id]);
  assert.deepEqual(s.all(), [kept]);
});

test("access times are written at each pass, so a restart keeps the order", async (t) => {
  const s = await store(t);
  const a = await task(s, 1, 4 * KiB, 1000);
  await task(s, 2, 4 * KiB, 2000);
  a.touch();
  await gc(s).pass("test");
  const again = new Storage(s.dataDir, log);
  t.after(() => again.close());
  await again.load();
  assert.deepEqual(
    (await gc(again).usage()).tasks.map((x) => x.task.id),
    ["2".repeat(64), "1".repeat(64)],
  );
});

test("a file that is not ours inside a task directory is neither counted nor deleted", async (t) => {
  const s = await store(t);
  const a = await task(s, 1, 64 * KiB, 1000);
  const before = await s.diskBytes(a);
  writeFileSync(join(a.dir, "notes.txt"), Buffer.alloc(512 * KiB));
  const b = await task(s, 2, 64 * KiB, 2000);
  assert.equal(await s.diskBytes(b), before);
  assert.ok((await gc(s).usage()).total < 2 * before + 1);
  await gc(s).pass("prune", { all: true });
  assert.deepEqual(readdirSync(a.dir), ["notes.txt"]);
});

test("watermarks: sizes, percentages, off; bad values are refused", () => {
  assert.deepEqual(parseWatermark("20GiB"), { bytes: 20 * 1024 ** 3 });
  assert.deepEqual(parseWatermark("0"), { bytes: 0 });
  assert.deepEqual(parseWatermark("80%"), { percent: 80 });
  assert.equal(watermarkBytes({ percent: 50 }, 1000), 500);
  assert.throws(() => parseWatermark("120%"), /at most 100%/);
  assert.throws(() => parseWatermark("lots"), /neither a byte size/);
});
