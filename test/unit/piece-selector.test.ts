import { test } from "node:test";
import assert from "node:assert/strict";
import { PieceSelector, READER_PATIENCE_MS, STREAM_WINDOW, type SelectableParent } from "../../src/peer/download/piece-selector.js";
import type { LocalTask } from "../../src/peer/storage/local-task.js";

// `wanted`: the piece a local reader is blocked on.
// `since`: when the reader began waiting (Date.now() time).
function fakeTask(total: number, stored: number[] = [], wanted?: number, since = 0): LocalTask {
  return {
    pieces: new Map(stored.map((n) => [n, {}])),
    totalPieces: total,
    firstWanted: () => wanted,
    wantedSince: () => (wanted === undefined ? undefined : since),
  } as unknown as LocalTask;
}
function parent(holds: number[], throughput = 1, inFlight = 0, busyUntil = 0): SelectableParent & { inFlight: number; busyUntil: number } {
  return { pieces: new Map(holds.map((n) => [n, {}])), inFlight, throughput, busyUntil };
}
const all = (n: number) => Array.from({ length: n }, (_, i) => i);
// A deterministic "random" source for reproducible orders.
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32;
}

test("with a local reader waiting, the pieces from the one it waits for go in order", () => {
  const sel = new PieceSelector(fakeTask(20, [0, 1, 3], 2), 8, seeded(1));
  const parents = new Map([["a", parent(all(20))]]);
  const inFlight = new Map<number, string>();
  const picks: number[] = [];
  for (let i = 0; i < STREAM_WINDOW; i++) {
    const p = sel.next(parents, inFlight)!;
    picks.push(p.piece);
    inFlight.set(p.piece, "a");
  }
  assert.deepEqual(picks, [2, 4, 5, 6]);
});

test("without a local reader nothing goes in order: the rarest piece first, then a random order of this peer's own", () => {
  const parents = new Map([
    ["a", parent(all(12))],
    ["b", parent(all(12).filter((n) => n !== 7))],
  ]);
  assert.equal(new PieceSelector(fakeTask(12), 8, seeded(5)).next(parents, new Map())?.piece, 7);
  const firsts = new Set<number>();
  for (let seed = 1; seed <= 8; seed++)
    firsts.add(new PieceSelector(fakeTask(64), 8, seeded(seed * 31)).next(new Map([["s", parent(all(64))]]), new Map())!.piece);
  assert.ok(!firsts.has(0) || firsts.size > 1, "every peer started at piece 0");
  assert.ok(firsts.size >= 6, `8 peers chose only ${firsts.size} distinct first pieces`);
});

test("a parent that said busy is not asked again before its back-off ends", () => {
  const sel = new PieceSelector(fakeTask(4), 4, seeded(4));
  const busy = parent(all(4), 100, 0, 2_000);
  const other = parent([3], 1, 0);
  const parents = new Map([
    ["busy", busy],
    ["other", other],
  ]);
  assert.equal(sel.next(parents, new Map(), 1_000)?.parent, other);
  assert.equal(sel.next(new Map([["busy", busy]]), new Map(), 1_000), undefined);
  assert.equal(sel.next(new Map([["busy", busy]]), new Map(), 2_001)?.parent, busy);
});

test("beyond a reader's window, the rarest piece among the parents goes first", () => {
  const sel = new PieceSelector(fakeTask(12, [], 0), 8, seeded(2));
  // Pieces 0..3 (the window) are in flight; 9 is held by one parent only.
  const parents = new Map([
    ["a", parent(all(12))],
    ["b", parent(all(12).filter((n) => n !== 9))],
    ["c", parent(all(12).filter((n) => n !== 9))],
  ]);
  const inFlight = new Map<number, string>(all(STREAM_WINDOW).map((n) => [n, "a"]));
  assert.equal(sel.next(parents, inFlight)?.piece, 9);
});

test("peers downloading at once spread over different pieces instead of all taking the same one", () => {
  const firsts = new Set<number>();
  for (let seed = 1; seed <= 8; seed++) {
    const sel = new PieceSelector(fakeTask(64), 8, seeded(seed * 7919));
    const parents = new Map([["seed", parent(all(64))]]);
    const inFlight = new Map<number, string>(all(STREAM_WINDOW).map((n) => [n, "seed"]));
    firsts.add(sel.next(parents, inFlight)!.piece);
  }
  assert.ok(firsts.size >= 6, `8 peers chose only ${firsts.size} distinct pieces: ${[...firsts].join(",")}`);
});

test("a parent at its limit is skipped; the fastest parent with room wins", () => {
  const sel = new PieceSelector(fakeTask(4, [], 0), 2, seeded(3));
  const busy = parent(all(4), 100, 2);
  const slow = parent(all(4), 1, 0);
  const fast = parent(all(4), 10, 1);
  const pick = sel.next(
    new Map([
      ["busy", busy],
      ["slow", slow],
      ["fast", fast],
    ]),
    new Map(),
  )!;
  assert.equal(pick.piece, 0);
  assert.equal(pick.parent, fast);
  assert.equal(sel.next(new Map([["busy", busy]]), new Map()), undefined);
});

test("one pass picks several pieces, filling each parent only up to its limit and spreading over parents", () => {
  const sel = new PieceSelector(fakeTask(40), 2, seeded(6));
  const a = parent(all(40), 5);
  const b = parent(all(40), 5);
  const c = parent([1, 2, 3], 5);
  const picks = sel.pick(
    new Map([
      ["a", a],
      ["b", b],
      ["c", c],
    ]),
    new Map(),
    10,
  );
  // 3 parents x 2 each: 6 picks, not 10; no piece twice; c only gets pieces it has.
  assert.equal(picks.length, 6);
  assert.equal(new Set(picks.map((p) => p.piece)).size, 6);
  for (const who of [a, b, c]) assert.equal(picks.filter((p) => p.parent === who).length, 2);
  for (const p of picks.filter((x) => x.parent === c)) assert.ok([1, 2, 3].includes(p.piece));
  sel.perParent = 1;
  assert.equal(
    sel.pick(
      new Map([
        ["a", a],
        ["b", b],
      ]),
      new Map(),
      10,
    ).length,
    2,
  );
});

test("a seed that suggests pieces is asked only for those, and for a local reader's window only once it has waited", () => {
  const seed = { ...parent(all(32), 10), suggested: new Set([20, 21]) };
  const sel = new PieceSelector(fakeTask(32), 4, seeded(3));
  const picks = sel
    .pick(new Map([["seed", seed]]), new Map(), 8)
    .map((p) => p.piece)
    .sort((a, b) => a - b);
  assert.deepEqual(picks, [20, 21]);
  const now = 100_000;
  // Just blocked: the window waits for peers, the seed sends its suggestions.
  const fresh = new PieceSelector(fakeTask(32, [], 5, now - READER_PATIENCE_MS + 1), 4, seeded(3));
  assert.deepEqual(
    fresh
      .pick(new Map([["seed", seed]]), new Map(), 8, now)
      .map((p) => p.piece)
      .sort((a, b) => a - b),
    [20, 21],
  );
  // ...while a peer that holds the window serves it first, in order.
  const peer = parent([6, 7], 1);
  const viaPeer = fresh.pick(
    new Map([
      ["seed", seed],
      ["peer", peer],
    ]),
    new Map(),
    8,
    now,
  );
  assert.deepEqual(
    viaPeer.slice(0, 2).map((p) => [p.piece, p.parent]),
    [
      [6, peer],
      [7, peer],
    ],
  );
  // Waited long enough: the seed is asked for the window regardless.
  const reading = new PieceSelector(fakeTask(32, [], 5, now - READER_PATIENCE_MS), 4, seeded(3));
  const withReader = reading.pick(new Map([["seed", seed]]), new Map(), 8, now).map((p) => p.piece);
  assert.deepEqual(withReader.slice(0, 4), [5, 6, 7, 8], "after the patience the reader's window comes from the seed");
  // Once suggestions end every piece is fair game again.
  const free = { ...seed, suggested: undefined };
  assert.equal(new PieceSelector(fakeTask(32), 4, seeded(3)).pick(new Map([["seed", free]]), new Map(), 4).length, 4);
});

test("parents holding a few of many missing pieces: exactly those are picked, rarest first, none twice", () => {
  const a = parent([70, 71, 72], 1);
  const b = parent([71, 72, 90], 1);
  const sel = new PieceSelector(fakeTask(1000, [0, 1, 2]), 4, seeded(9));
  const picks = sel.pick(
    new Map([
      ["a", a],
      ["b", b],
    ]),
    new Map([[90, "b"]]),
    8,
  );
  const got = picks.map((p) => p.piece);
  assert.deepEqual(got.slice(0, 1), [70], "held by one parent only: first");
  assert.deepEqual(
    [...got].sort((x, y) => x - y),
    [70, 71, 72],
    "in-flight piece 90 is not asked again",
  );
});
