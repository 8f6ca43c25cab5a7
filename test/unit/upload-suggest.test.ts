// A seed's piece server in initial seeding, on a real socket (127.0.0.1):
// children naming themselves (?peer=) on the sync stream are suggested
// disjoint pieces, a piece request brings the next suggestion, the stream of
// a finished task stays open until the suggestions end, and a bad name is 400.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { request } from "undici";
import { crc32Update } from "../../src/common/pieces.js";
import { UploadServer } from "../../src/peer/upload/upload-server.js";
import { decodeSyncStream, type SyncMessage } from "../../src/protocol/data-plane.js";
import { OFFERS_AHEAD } from "../../src/peer/upload/piece-offers.js";
import { storedTask } from "../helpers/store.js";

const log = pino({ level: "silent" });
const ID = "d".repeat(64);
const PIECE = 16 * 1024;
const TOTAL = 12;

// Reads a sync stream in the background; until(pred) waits for a condition.
function follow(body: AsyncIterable<Uint8Array>) {
  const seen: SyncMessage[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  void (async () => {
    try {
      for await (const m of decodeSyncStream(body)) {
        seen.push(m);
        wake?.();
      }
    } finally {
      closed = true;
      wake?.();
    }
  })();
  return {
    seen,
    get closed() {
      return closed;
    },
    suggested: () => seen.flatMap((m) => (m.type === "suggest" ? m.pieces : [])),
    async until(pred: () => boolean, ms = 2_000): Promise<void> {
      const end = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > end) throw new Error(`timed out; saw ${JSON.stringify(seen)}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
    },
  };
}

test("initial seeding over HTTP: disjoint suggestions per child, one more per request, done only after suggest-end", async (t) => {
  const { storage, task } = await storedTask(t, ID, PIECE * TOTAL, PIECE, "damselfly-suggest-");
  const put = async (n: number) => {
    const data = Buffer.alloc(PIECE, n);
    await task.writev(n * PIECE, [data]);
    await task.markPiece({ number: n, crc: crc32Update(data), length: data.length });
  };
  for (let n = 0; n < 10; n++) await put(n);
  const server = new UploadServer({ listen: "127.0.0.1:0", storage, logger: log, uploadConcurrency: 4, superSeeding: true });
  await server.start();
  t.after(() => server.close());
  const base = `http://127.0.0.1:${server.address.port}/v1/tasks/${ID}`;

  const bad = await request(`${base}/sync?peer=${encodeURIComponent("../etc")}`);
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.headers["x-damselfly-error"], "DF_ERR_INVALID_REQUEST");
  await bad.body.dump();

  const a = follow((await request(`${base}/sync?peer=a`)).body);
  const b = follow((await request(`${base}/sync?peer=b`)).body);
  const plain = follow((await request(`${base}/sync`)).body);
  await a.until(() => a.suggested().length === OFFERS_AHEAD);
  await b.until(() => b.suggested().length === OFFERS_AHEAD);
  assert.deepEqual(a.suggested(), [0, 1, 2, 3]);
  assert.deepEqual(b.suggested(), [4, 5, 6, 7]);
  // Suggestions are announced (an empty list) before the first piece list, so
  // a child never sees pieces it may ask for freely.
  for (const s of [a, b]) {
    const types = s.seen.map((m) => m.type);
    assert.ok(types.indexOf("suggest") < types.indexOf("pieces"), types.join(","));
  }

  // a asks for piece 1 (and gets its bytes): piece 8 is suggested to a.
  const got = await request(`${base}/pieces/1?peer=a`);
  assert.equal(got.statusCode, 200);
  assert.ok(Buffer.from(await got.body.arrayBuffer()).equals(Buffer.alloc(PIECE, 1)));
  await a.until(() => a.suggested().includes(8));
  assert.equal(b.suggested().length, OFFERS_AHEAD);

  // The seed finishes its own download: the named children's streams stay
  // open (suggestions go on), the plain one ends with "done".
  await put(10);
  await put(11);
  await task.markDone(true);
  await plain.until(() => plain.closed);
  assert.equal(plain.seen.at(-1)?.type, "done");
  assert.equal(plain.suggested().length, 0, "a child that does not name itself gets no suggestions");
  assert.ok(!a.closed && !b.closed);

  // b asks for its pieces: 9, 10, 11 are the last ones offered, and then the
  // suggestions end: suggest-end, then done.
  for (const n of [4, 5, 6]) await (await request(`${base}/pieces/${n}?peer=b`)).body.dump();
  await a.until(() => a.closed);
  await b.until(() => b.closed);
  for (const s of [a, b]) {
    const types = s.seen.map((m) => m.type);
    assert.equal(types.at(-1), "done");
    assert.equal(types.filter((x) => x === "suggest-end").length, 1);
    assert.ok(types.indexOf("suggest-end") < types.indexOf("done"), `suggest-end before done: ${types.join(",")}`);
  }
  const all = [...a.suggested(), ...b.suggested()].sort((x, y) => x - y);
  assert.deepEqual(
    all,
    Array.from({ length: TOTAL }, (_, i) => i),
    "each piece suggested exactly once",
  );
});
