// What a task keeps to hand its pieces on with TLS: each piece's signed
// digest in pieces.log and the fetchers' bundles in bundles.json, both back
// after a restart; a piece is servable only with its fetcher's bundle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "../../src/common/logger.js";
import { Storage } from "../../src/peer/storage/storage.js";
import { LocalTask } from "../../src/peer/storage/local-task.js";
import { sha256Hex, signBundle, signGrant, signPiece } from "../../src/protocol/trust.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { makePki } from "../helpers/pki.js";
import { tempDir } from "../helpers/store.js";

const PIECE = 512 * 1024;
const ID = "f".repeat(64);
const origin = { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 };

test("piece records and bundles survive a restart; a record without its bundle is not servable; the task's files are all its own", async (t) => {
  const dir = tempDir(t, "df-store-trust-");
  const pki = await makePki(join(dir, "pki"));
  const sched = TlsIdentity.load(await pki.issue("scheduler", "s"), { watch: false }).current();
  const fetcher = TlsIdentity.load(await pki.issue("peer", "f"), { watch: false }).current();
  const dataDir = join(dir, "data");
  const first = new Storage(dataDir, createLogger("silent"));
  await first.load();
  const task = await first.getOrCreate(ID, origin);
  await task.setInfo(2 * PIECE, PIECE);
  const pieces = [Buffer.alloc(PIECE, 1), Buffer.alloc(PIECE, 2)];
  const fp = fetcher.leaf.fingerprint256;
  for (const [n, d] of pieces.entries()) {
    await task.writev(n * PIECE, [d]);
    const sha = sha256Hex(d);
    await task.markPiece({ number: n, crc: 7, length: PIECE, trust: { sha256: sha, fetcher: fp, sig: signPiece(fetcher, ID, n, PIECE, sha).sig } });
  }
  await task.markDone(true);
  assert.ok(!task.trusted, "no bundle yet");
  const seen: string[] = [];
  task.on("bundle", (b) => seen.push(b.grant.fetcher));
  const bundle = signBundle(fetcher, signGrant(sched, ID, "p", fp), 2 * PIECE, PIECE);
  await task.bundles.add(bundle);
  await task.bundles.add(bundle);
  assert.deepEqual(seen, [fp], "one bundle per fetcher");
  assert.ok(task.trusted);
  await first.close();

  const again = new Storage(dataDir, createLogger("silent"));
  await again.load();
  t.after(() => again.close());
  const back = again.get(ID)!;
  assert.ok(back.done && back.trusted);
  assert.equal(back.pieces.get(1)!.trust!.sha256, sha256Hex(pieces[1]!));
  assert.deepEqual(back.bundles.all, [bundle]);
  // A piece line cut short inside its record is not kept.
  assert.equal(LocalTask.parseLog(`0 7 ${PIECE} ${"a".repeat(64)} AB:C`).size, 0);
  // Every file in the task directory is one the store deletes with it.
  const files = readdirSync(back.dir);
  assert.ok(files.includes("bundles.json"));
  const { removed } = await again.evict([back]);
  assert.equal(removed.length, 1);
  assert.deepEqual(readdirSync(join(dataDir, "tasks", ID.slice(0, 3))), []);
});

test("a bundles.json that is not a list of bundles is ignored", async (t) => {
  const dataDir = tempDir(t, "df-store-trust-bad-");
  const first = new Storage(dataDir, createLogger("silent"));
  await first.load();
  const task = await first.getOrCreate(ID, origin);
  await first.close();
  writeFileSync(join(task.dir, "bundles.json"), JSON.stringify([{ grant: 1 }, "x"]));
  const again = new Storage(dataDir, createLogger("silent"));
  await again.load();
  t.after(() => again.close());
  assert.equal(again.get(ID)!.bundles.size, 0);
});
