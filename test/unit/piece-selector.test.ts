import { test } from "node:test";
import assert from "node:assert/strict";
import { PieceSelector, STREAM_WINDOW, type SelectableParent } from "../../src/peer/download/piece-selector.js";
import type { LocalTask } from "../../src/peer/storage/local-task.js";

function fakeTask(total: number, stored: number[] = []): LocalTask {
  return { pieces: new Map(stored.map((n) => [n, {}])), totalPieces: total } as unknown as LocalTask;
}
function parent(holds: number[], throughput = 1, inFlight = 0): SelectableParent & { inFlight: number } {
  return { pieces: new Map(holds.map((n) => [n, {}])), inFlight, throughput };
}
const all = (n: number) => Array.from({ length: n }, (_, i) => i);
// A deterministic "random" source for reproducible orders.
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

test("the first missing pieces go in order, for a local reader", () => {
  const sel = new PieceSelector(fakeTask(20, [0, 1]), 8, seeded(1));
  const parents = new Map([["a", parent(all(20))]]);
  const inFlight = new Map<number, string>();
  const picks: number[] = [];
  for (let i = 0; i < STREAM_WINDOW; i++) {
    const p = sel.next(parents, inFlight)!;
    picks.push(p.piece);
    inFlight.set(p.piece, "a");
  }
  assert.deepEqual(picks, [2, 3, 4, 5]);
});

test("beyond the window, the rarest piece among the parents goes first", () => {
  const sel = new PieceSelector(fakeTask(12), 8, seeded(2));
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
  const sel = new PieceSelector(fakeTask(4), 2, seeded(3));
  const busy = parent(all(4), 100, 2);
  const slow = parent(all(4), 1, 0);
  const fast = parent(all(4), 10, 1);
  const pick = sel.next(new Map([["busy", busy], ["slow", slow], ["fast", fast]]), new Map())!;
  assert.equal(pick.piece, 0);
  assert.equal(pick.parent, fast);
  assert.equal(sel.next(new Map([["busy", busy]]), new Map()), undefined);
});
