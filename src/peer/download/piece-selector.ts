import type { LocalTask } from "../storage/local-task.js";
import type { ParentConn } from "./parent-conn.js";

export interface PiecePick {
  piece: number;
  parent: ParentConn;
}

// Decides which missing piece to fetch next and from which parent. Pieces go
// roughly in order (a local reader streams them in order), starting from the
// first missing one; among parents holding a piece, the one with the most
// spare capacity, weighted by measured throughput, wins.
export class PieceSelector {
  private cursor = 0;

  constructor(private readonly task: LocalTask, private readonly perParent: number) {}

  next(parents: Map<string, ParentConn>, inFlight: Map<number, string>): PiecePick | undefined {
    if (parents.size === 0) return undefined;
    const pieces = this.task.pieces;
    while (pieces.has(this.cursor)) this.cursor++;
    const total = this.task.totalPieces;
    // Every piece below the cursor is stored, so the scan starts there.
    const order = total >= 0 ? range(this.cursor, total) : this.advertised(parents);
    for (const n of order) {
      if (pieces.has(n) || inFlight.has(n)) continue;
      let best: ParentConn | undefined;
      let bestScore = -1;
      for (const p of parents.values()) {
        if (p.inFlight >= this.perParent || !p.pieces.has(n)) continue;
        const score = p.throughput / (1 + p.inFlight);
        if (score > bestScore) {
          best = p;
          bestScore = score;
        }
      }
      if (best) return { piece: n, parent: best };
    }
    return undefined;
  }

  private advertised(parents: Map<string, ParentConn>): number[] {
    const set = new Set<number>();
    for (const p of parents.values()) for (const n of p.pieces.keys()) set.add(n);
    return [...set].sort((a, b) => a - b);
  }
}

function* range(from: number, to: number): Generator<number> {
  for (let n = from; n < to; n++) yield n;
}
