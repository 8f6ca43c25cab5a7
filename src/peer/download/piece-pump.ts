import type { DownloadState } from "./download-state.js";
import type { ParentConn } from "./parent-conn.js";
import type { ParentSet } from "./parent-set.js";
import { piecesAtOnce, type PeerTaskOptions } from "./peer-task-options.js";
import type { PieceFetcher } from "./piece-fetcher.js";
import { PieceSelector } from "./piece-selector.js";

// With this few pieces missing, all of them in flight and room for more,
// the slowest in-flight pieces are also asked of a second parent (endgame):
// the first copy to arrive wins (PieceFetcher.duplicate).
const ENDGAME_PIECES = 4;

export interface PiecePumpDeps {
  options: Pick<PeerTaskOptions, "task" | "piecesInFlight" | "piecesPerParent" | "limits" | "tls">;
  state: DownloadState;
  parents: ParentSet;
  fetcher: PieceFetcher;
  // Every piece is stored.
  complete(): void;
  dropParent(conn: ParentConn, reason: string): void;
}

// Keeps a task's piece requests full: chooses which pieces to ask of which
// parents (PieceSelector) up to the in-flight limits, duplicates the last few
// (endgame), and comes back when a busy parent may take requests again.
export class PiecePump {
  private readonly selector: PieceSelector<ParentConn>;
  private queued = false;
  // Wakes run() when a busy parent may take requests again.
  private busyRetry: NodeJS.Timeout | undefined;

  constructor(private readonly d: PiecePumpDeps) {
    this.selector = new PieceSelector(d.options.task, d.options.piecesPerParent);
  }

  // Piece announcements arrive from every parent for every piece: one run per
  // turn of the event loop covers them all.
  schedule(): void {
    if (this.queued) return;
    this.queued = true;
    setImmediate(() => {
      this.queued = false;
      this.run();
    });
  }

  // Starts as many piece fetches as the limits allow.
  run(): void {
    const { task, piecesPerParent } = this.d.options;
    const { parents, fetcher } = this.d;
    // With TLS nothing is asked of a parent before a verified bundle gave
    // the task its geometry.
    if (!this.d.state.pulling || task.meta.pieceLength <= 0 || (this.d.options.tls && !task.infoKnown)) return;
    if (task.infoKnown && task.pieces.size === task.totalPieces) {
      this.d.complete();
      return;
    }
    // Spread the requests: with many parents, one at a time from each keeps
    // every parent's line full without piling on the favourite.
    const maxInFlight = piecesAtOnce(this.d.options, task.meta.pieceLength);
    const inFlight = fetcher.inFlight;
    this.selector.perParent = Math.max(1, Math.min(piecesPerParent, Math.floor(maxInFlight / Math.max(1, parents.size))));
    const picks = this.selector.pick(parents.conns, inFlight, maxInFlight - fetcher.active);
    for (const pick of picks) fetcher.fetch(pick.piece, pick.parent);
    if (picks.length === 0) this.endgame(maxInFlight);
    if (inFlight.size < maxInFlight) this.retryWhenNotBusy();
    // Parents that will never help again go now rather than at the stall
    // timer.
    if (inFlight.size === 0) for (const p of parents.deadEnds()) this.d.dropParent(p, "finished parent lacks pieces we miss");
  }

  close(): void {
    if (this.busyRetry) clearTimeout(this.busyRetry);
  }

  // Some parent said busy and is why we fetch less than we could: try again
  // once the first of them may have a free slot.
  private retryWhenNotBusy(): void {
    if (this.busyRetry) return;
    const now = Date.now();
    const soonest = this.d.parents.soonestFree(now);
    if (soonest === Infinity) return;
    this.busyRetry = setTimeout(
      () => {
        this.busyRetry = undefined;
        this.run();
      },
      Math.ceil(soonest - now),
    );
  }

  // Asks a second parent for the oldest pieces in flight when only a few are
  // missing (see ENDGAME_PIECES).
  private endgame(maxInFlight: number): void {
    const t = this.d.options.task;
    const { fetcher } = this.d;
    const inFlight = fetcher.inFlight;
    if (!t.infoKnown || inFlight.size === 0 || t.totalPieces - t.pieces.size > ENDGAME_PIECES) return;
    const now = Date.now();
    for (const [n, from] of inFlight) {
      if (fetcher.active >= maxInFlight) return;
      if (!fetcher.duplicable(n, now)) continue;
      const best = this.d.parents.fastestWith(n, from, this.selector.perParent, now);
      if (best) fetcher.duplicate(n, best);
    }
  }
}
