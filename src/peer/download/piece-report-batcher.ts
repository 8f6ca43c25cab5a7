import { create } from "@bufbuild/protobuf";
import { schedulerv1 } from "../../protocol/index.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];

export interface PieceBatchOptions {
  // A reported piece reaches the scheduler at most this late.
  windowMs: number;
  // A batch this big goes out at once (bounds the message size).
  maxPieces: number;
}

// Per-piece reports were most of what the scheduler handled (one message per
// piece per peer); the scheduler needs piece progress for scoring parents, not
// to the millisecond. Progress this stale does not change a decision.
export const PIECE_BATCH_DEFAULTS: PieceBatchOptions = { windowMs: 500, maxPieces: 64 };

// Coalesces consecutive piece_finished reports of one announce stream into
// pieces_finished messages. Any other message first flushes the pieces held,
// so the scheduler sees everything in the order it was sent (peer_finished
// after the last piece). The stream's first piece goes out at once: it is
// what makes this peer a parent the scheduler offers to the others, and in a
// cold swarm every window it waits is a window the swarm's uplinks idle.
export class PieceReportBatcher {
  private pending: schedulerv1.PieceFinishedRequest[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private first = true;

  constructor(
    private readonly emit: (req: Req) => void,
    private readonly opts: PieceBatchOptions = PIECE_BATCH_DEFAULTS,
  ) {}

  send(req: Req): void {
    if (this.closed) return;
    if (req.case !== "pieceFinished") {
      this.flush();
      this.emit(req);
      return;
    }
    this.pending.push(req.value);
    if (this.first || this.pending.length >= this.opts.maxPieces) {
      this.first = false;
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.opts.windowMs);
      // Close flushes: a pending report must not keep the process alive.
      this.timer.unref();
    }
  }

  // Sends the pieces held now. A lone piece goes as piece_finished.
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const pieces = this.pending;
    if (pieces.length === 0) return;
    this.pending = [];
    if (pieces.length === 1) this.emit({ case: "pieceFinished", value: pieces[0]! });
    else this.emit({ case: "piecesFinished", value: create(schedulerv1.PiecesFinishedRequestSchema, { pieces }) });
  }

  // Flushes and stops: later sends are dropped, as on a closed stream.
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
  }
}
