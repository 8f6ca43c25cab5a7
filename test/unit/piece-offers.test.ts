// A seed's initial seeding: which pieces each child is told to take from the
// seed, on a real stored task (pieces marked as they "arrive" from the origin).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { LocalTask } from "../../src/peer/storage/local-task.js";
import type { Cleanup } from "../helpers/procs.js";
import { storedTask } from "../helpers/store.js";
import { OFFER_TTL_MS, OFFERS_AHEAD, PieceOffers, type OfferSink } from "../../src/peer/upload/piece-offers.js";

const PIECE = 16 * 1024;

async function seedTask(t: Cleanup, total: number): Promise<LocalTask> {
  return (await storedTask(t, "c".repeat(64), PIECE * total, PIECE, "damselfly-offers-")).task;
}
const store = (task: LocalTask, n: number) => task.markPiece({ number: n, crc: n, length: PIECE });

class Child implements OfferSink {
  readonly got: number[] = [];
  ended = false;
  suggest(pieces: number[]): void {
    this.got.push(...pieces);
  }
  end(): void {
    this.ended = true;
  }
}

test("children joining a seed that holds few pieces are each suggested different ones; new pieces go to whoever has fewest", async (t) => {
  const task = await seedTask(t, 64);
  for (const n of [0, 1, 2]) await store(task, n);
  const offers = new PieceOffers(task);
  const [a, b, c] = [new Child(), new Child(), new Child()];
  offers.join("a", a);
  offers.join("b", b);
  offers.join("c", c);
  assert.deepEqual(a.got, [0, 1, 2], "the first child takes what there is");
  assert.deepEqual([b.got, c.got], [[], []], "no piece is suggested twice");
  for (let n = 3; n < 12; n++) await store(task, n);
  assert.equal(a.got.length, 4);
  assert.equal(b.got.length, OFFERS_AHEAD);
  assert.equal(c.got.length, OFFERS_AHEAD);
  const all = [...a.got, ...b.got, ...c.got].sort((x, y) => x - y);
  assert.deepEqual(
    all,
    Array.from({ length: 12 }, (_, i) => i),
    "every stored piece offered exactly once",
  );
});

test("a request uses up one suggestion and brings the next; a child that leaves hands its unasked pieces to the next", async (t) => {
  const task = await seedTask(t, 64);
  for (let n = 0; n < 20; n++) await store(task, n);
  const offers = new PieceOffers(task);
  const [a, b, c] = [new Child(), new Child(), new Child()];
  offers.join("a", a);
  const leaveB = offers.join("b", b);
  assert.deepEqual(a.got, [0, 1, 2, 3]);
  assert.deepEqual(b.got, [4, 5, 6, 7]);
  offers.requested("a", 0);
  assert.deepEqual(a.got, [0, 1, 2, 3, 8], "one asked for, one more suggested");
  offers.requested("a", 9);
  assert.equal(a.got.length, 5, "asking for a piece it was not suggested uses up nothing");
  offers.requested("b", 4);
  assert.deepEqual(b.got, [4, 5, 6, 7, 9]);
  leaveB!();
  offers.join("c", c);
  assert.deepEqual(
    c.got.sort((x, y) => x - y),
    [5, 6, 7, 9],
    "b's unasked pieces are offered again before fresh ones",
  );
});

test("suggestions end once every piece is held and has been offered: every child is told", async (t) => {
  const task = await seedTask(t, 8);
  for (let n = 0; n < 6; n++) await store(task, n);
  const offers = new PieceOffers(task);
  const [a, b] = [new Child(), new Child()];
  offers.join("a", a);
  offers.join("b", b);
  assert.ok(offers.active);
  offers.requested("b", 4);
  offers.requested("b", 5);
  assert.ok(offers.active, "pieces 6 and 7 are not held yet");
  await store(task, 6);
  assert.ok(offers.active);
  await store(task, 7);
  assert.equal(offers.active, false);
  assert.ok(a.ended && b.ended);
  assert.deepEqual([...a.got, ...b.got].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(offers.join("late", new Child()), undefined, "a child joining afterwards is not restricted");
});

test("a suggestion not asked for within the TTL goes to another child, never back to the one that let it lapse", async (t) => {
  const task = await seedTask(t, 64);
  for (let n = 0; n < 8; n++) await store(task, n);
  let now = 0;
  const offers = new PieceOffers(task, () => now);
  const [a, b] = [new Child(), new Child()];
  const leaveA = offers.join("a", a);
  now = OFFER_TTL_MS / 2;
  const leaveB = offers.join("b", b);
  offers.requested("b", 4);
  offers.requested("b", 5);
  assert.deepEqual(b.got, [4, 5, 6, 7]);
  now = OFFER_TTL_MS + 1;
  offers.expire();
  assert.deepEqual(b.got, [4, 5, 6, 7, 0, 1], "a's lapsed pieces went to b, which had room for two");
  assert.deepEqual(a.got, [0, 1, 2, 3], "nothing goes back to a");
  leaveA!();
  leaveB!();
});
