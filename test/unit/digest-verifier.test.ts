import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Storage } from "../../src/peer/storage/storage.js";
import { DigestVerifier } from "../../src/peer/download/digest-verifier.js";
import { parseDigest } from "../../src/common/digest.js";
import { crc32Update } from "../../src/common/pieces.js";
import { createLogger } from "../../src/common/logger.js";

const PL = 1024;

async function setup(t: { after(fn: () => unknown): void }, size: number) {
  const dir = mkdtempSync(join(tmpdir(), "dfv-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const storage = new Storage(dir, createLogger("silent"));
  await storage.load();
  t.after(() => storage.close());
  const data = randomBytes(size);
  const task = await storage.getOrCreate("a".repeat(64), { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 });
  await task.setInfo(size, PL);
  const digest = parseDigest("sha256:" + createHash("sha256").update(data).digest("hex"));
  const store = async (n: number, content = data) => {
    const piece = content.subarray(n * PL, Math.min(size, (n + 1) * PL));
    await task.writev(n * PL, [piece]);
    await task.markPiece({ number: n, crc: crc32Update(piece), length: piece.length });
  };
  return { task, data, digest, store };
}

test("pieces stored out of order are hashed in order; the result matches", async (t) => {
  const { task, digest, store } = await setup(t, 5 * PL + 17);
  const v = new DigestVerifier(task, digest);
  for (const n of [3, 1, 5, 0, 4, 2]) await store(n);
  await v.result;
});

test("bytes fed as they stream in (with chunks overlapping what is hashed) and read-back mix to the right digest", async (t) => {
  const { task, data, digest, store } = await setup(t, 4 * PL);
  const v = new DigestVerifier(task, digest);
  v.feed(0, data.subarray(0, 700));
  v.feed(500, data.subarray(500, 1500)); // overlaps: only 700.. is new
  v.feed(3000, data.subarray(3000, 3100)); // ahead: ignored, read back later
  v.feed(100, data.subarray(100, 200)); // behind: ignored
  for (const n of [0, 1, 2, 3]) await store(n);
  await v.result;
});

test("content that differs from the digest is a DF_ERR_DIGEST_MISMATCH", async (t) => {
  const { task, data, digest, store } = await setup(t, 3 * PL);
  const v = new DigestVerifier(task, digest);
  const wrong = Buffer.from(data);
  wrong[PL + 5] = wrong[PL + 5]! ^ 1;
  for (const n of [0, 1, 2]) await store(n, wrong);
  await assert.rejects(v.result, (e: Error & { code?: string }) => e.code === "DF_ERR_DIGEST_MISMATCH");
});

test("gitsha1 is git's blob id (known values), and needs the length first", async (t) => {
  const { Digester, hashFile } = await import("../../src/common/digest.js");
  const id = (s: string) => {
    const d = new Digester("gitsha1", Buffer.byteLength(s));
    d.update(Buffer.from(s));
    return d.digest().hex;
  };
  // `git hash-object` of an empty file and of "hello\n".
  assert.equal(id(""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  assert.equal(id("hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
  assert.throws(() => new Digester("gitsha1"), /needs the content length/);
  const dir = mkdtempSync(join(tmpdir(), "dfv-git-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { writeFileSync } = await import("node:fs");
  writeFileSync(join(dir, "f"), "hello\n");
  assert.equal((await hashFile(join(dir, "f"), "gitsha1")).hex, "ce013625030ba8dba906f756967f9e9ca394464a");
});

test("a gitsha1 task is verified while it downloads, fed bytes and read-back alike", async (t) => {
  const { task, data, store } = await setup(t, 3 * PL + 9);
  const blob = createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
  const v = new DigestVerifier(task, parseDigest(`gitsha1:${blob}`));
  v.feed(0, data.subarray(0, 600));
  for (const n of [2, 0, 3, 1]) await store(n);
  await v.result;
  const { task: other, data: d2, store: store2 } = await setup(t, 2 * PL);
  const wrong = new DigestVerifier(other, parseDigest(`gitsha1:${blob}`));
  for (const n of [0, 1]) await store2(n, d2);
  await assert.rejects(wrong.result, (e: Error & { code?: string }) => e.code === "DF_ERR_DIGEST_MISMATCH");
});
