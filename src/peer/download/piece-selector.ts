import type { LocalTask } from "../storage/local-task.js";

export interface PiecePick<P extends SelectableParent> {
  piece: number;
  parent: P;
}

// What the selector needs of a parent connection.
export interface SelectableParent {
  readonly pieces: ReadonlyMap<number, unknown>;
  readonly inFlight: number;
  readonly throughput: number;
}

// Pieces this close to the first missing one are fetched in order, so a local
// reader (the proxy, a streaming `get`) keeps moving.
export const STREAM_WINDOW = 4;

// Decides which missing piece to fetch next and from which parent.
// - The first STREAM_WINDOW missing pieces go in order (a local reader streams
//   the task from the front).
// - Beyond that, the rarest piece among the parents goes first, ties broken
//   by a random order private to this peer: peers that download at once then
//   hold different pieces and can trade them, instead of all waiting for the
//   same piece from the same parent.
// Among parents holding the piece, the one with the most spare capacity,
// weighted by measured throughput, wins.
export class PieceSelector<P extends SelectableParent> {
  private cursor = 0;
  private rank: Uint32Array | undefined;

  constructor(
    private readonly task: LocalTask,
    private readonly perParent: number,
    private readonly random: () => number = Math.random,
  ) {}

  next(parents: ReadonlyMap<string, P>, inFlight: ReadonlyMap<number, string>): PiecePick<P> | undefined {
    if (parents.size === 0) return undefined;
    const pieces = this.task.pieces;
    while (pieces.has(this.cursor)) this.cursor++;
    const total = this.task.totalPieces;
    const order = total >= 0 ? range(this.cursor, total) : advertised(parents);
    const rank = total >= 0 ? this.ranks(total) : undefined;
    let best: PiecePick<P> | undefined;
    let bestAvail = Infinity;
    let bestRank = Infinity;
    let missingSeen = 0;
    for (const n of order) {
      if (pieces.has(n)) continue;
      const inWindow = missingSeen++ < STREAM_WINDOW;
      if (inFlight.has(n)) continue;
      let parent: P | undefined;
      let score = -1;
      let avail = 0;
      for (const p of parents.values()) {
        if (!p.pieces.has(n)) continue;
        avail++;
        if (p.inFlight >= this.perParent) continue;
        const s = p.throughput / (1 + p.inFlight);
        if (s > score) {
          parent = p;
          score = s;
        }
      }
      if (!parent) continue;
      if (inWindow || !rank) return { piece: n, parent };
      const r = rank[n]!;
      if (avail < bestAvail || (avail === bestAvail && r < bestRank)) {
        best = { piece: n, parent };
        bestAvail = avail;
        bestRank = r;
      }
    }
    return best;
  }

  // A random permutation of piece numbers, fixed for this download.
  private ranks(total: number): Uint32Array {
    if (this.rank && this.rank.length === total) return this.rank;
    const r = new Uint32Array(total);
    for (let i = 0; i < total; i++) r[i] = i;
    for (let i = total - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const t = r[i]!;
      r[i] = r[j]!;
      r[j] = t;
    }
    this.rank = r;
    return r;
  }
}

function advertised(parents: ReadonlyMap<string, SelectableParent>): number[] {
  const set = new Set<number>();
  for (const p of parents.values()) for (const n of p.pieces.keys()) set.add(n);
  return [...set].sort((a, b) => a - b);
}

function* range(from: number, to: number): Generator<number> {
  for (let n = from; n < to; n++) yield n;
}
