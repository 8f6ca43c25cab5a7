import { DamselflyError } from "../../common/errors.js";
import type { LocalTask } from "../storage/local-task.js";
import type { ParentConn } from "./parent-conn.js";
import { MemorySink } from "./piece-writer.js";
import type { PieceResult } from "./piece-response.js";

// An endgame duplicate is asked only for pieces in flight this long (a
// duplicate that loses wastes a parent's upload).
const ENDGAME_MIN_AGE_MS = 1_000;

export interface PieceFetcherContext {
  task: LocalTask;
  // Aborted when the download ends: every request stops.
  signal: AbortSignal;
  stats: { bytesFromPeers: number; busyAnswers: number; endgameWins: number };
  ended(): boolean;
  // A piece from `parent` is in the file and checked (`micros`: since it
  // was asked for).
  stored(n: number, crc: number, length: number, parent: ParentConn, micros: bigint): void;
  // A request failed for another reason than the parent being busy.
  failed(n: number, parent: ParentConn, err: DamselflyError): void;
  // A piece came from `parent` (the first copy of it).
  served(parent: ParentConn): void;
  // A request is over, whatever its outcome: there may be room for another.
  settled(): void;
}

// Downloads single pieces from parents: the request for a piece, at most one
// endgame duplicate of it from a second parent (the first copy to arrive
// wins), and the bookkeeping of what is in flight.
export class PieceFetcher {
  // Piece -> the parent asked for it.
  readonly inFlight = new Map<number, string>();
  // Requests in flight from the first parent asked, stoppable by an endgame
  // duplicate, and the duplicates themselves.
  private readonly fetches = new Map<number, { ctrl: AbortController; done: Promise<void>; at: number }>();
  private readonly dups = new Map<number, AbortController>();
  private idleWaiter: (() => void) | undefined;

  constructor(private readonly c: PieceFetcherContext) {}

  // Requests in flight, duplicates included.
  get active(): number {
    return this.inFlight.size + this.dups.size;
  }

  fetch(n: number, parent: ParentConn): void {
    const t = this.c.task;
    this.inFlight.set(n, parent.id);
    parent.inFlight++;
    const offset = n * t.meta.pieceLength;
    const started = process.hrtime.bigint();
    const ctrl = new AbortController();
    const done = parent
      .fetchPiece(t, n, offset, AbortSignal.any([this.c.signal, ctrl.signal]))
      .then(async (got) => {
        this.dups.get(n)?.abort();
        if (t.pieces.has(n)) return;
        await this.store(n, got, parent, started);
        parent.failures = 0;
        this.c.served(parent);
      })
      .catch((err) => {
        // Stopped because an endgame duplicate got here first.
        if (this.c.ended() || ctrl.signal.aborted) return;
        const e = DamselflyError.from(err, "DF_ERR_PARENT_FAILED");
        // Busy is the parent's normal flow control, not a failure to report.
        if (e.code === "DF_ERR_UPLOAD_BUSY") {
          this.c.stats.busyAnswers++;
          parent.markBusy();
          return;
        }
        this.c.failed(n, parent, e);
      })
      .finally(() => {
        this.fetches.delete(n);
        this.inFlight.delete(n);
        parent.inFlight--;
        if (this.inFlight.size === 0) this.idleWaiter?.();
        this.c.settled();
      });
    this.fetches.set(n, { ctrl, done, at: Date.now() });
  }

  // A piece in flight long enough, and not duplicated yet, to be asked of a
  // second parent.
  duplicable(n: number, now: number): boolean {
    const f = this.fetches.get(n);
    return !this.dups.has(n) && f !== undefined && now - f.at >= ENDGAME_MIN_AGE_MS;
  }

  // Asks `parent` for a piece already in flight. The duplicate lands in
  // memory and reaches the file only once the original request is stopped
  // and its writes drained.
  duplicate(n: number, parent: ParentConn): void {
    const t = this.c.task;
    const { offset, length: size } = t.pieceRange(n);
    const ctrl = new AbortController();
    const sink = new MemorySink(offset, size);
    this.dups.set(n, ctrl);
    parent.inFlight++;
    const started = process.hrtime.bigint();
    parent
      .fetchPiece(sink, n, offset, AbortSignal.any([this.c.signal, ctrl.signal]))
      .then(async (got) => {
        const orig = this.fetches.get(n);
        if (this.c.ended() || t.pieces.has(n) || !orig) return;
        // Stop the original and let its writes land before ours.
        orig.ctrl.abort();
        await orig.done;
        if (this.c.ended() || t.pieces.has(n) || this.inFlight.has(n)) return;
        this.inFlight.set(n, parent.id);
        try {
          await t.writev(offset, [sink.buf]);
          this.c.stats.endgameWins++;
          await this.store(n, got, parent, started);
        } finally {
          this.inFlight.delete(n);
        }
      })
      // A duplicate that fails or loses changes nothing: the original goes on.
      .catch(() => undefined)
      .finally(() => {
        this.dups.delete(n);
        parent.inFlight--;
        this.c.settled();
      });
  }

  private async store(n: number, { crc, length, trust }: PieceResult, parent: ParentConn, started: bigint): Promise<void> {
    this.c.stats.bytesFromPeers += length;
    await this.c.task.markPiece(trust ? { number: n, crc, length, trust, fromPeer: true } : { number: n, crc, length, fromPeer: true });
    parent.piecesServed++;
    this.c.stored(n, crc, length, parent, (process.hrtime.bigint() - started) / 1000n);
  }

  // Resolves once no piece is being fetched from a parent (or the download
  // ended).
  noneInFlight(): Promise<void> {
    if (this.inFlight.size === 0 || this.c.ended()) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiter = () => {
        this.idleWaiter = undefined;
        resolve();
      };
    });
  }

  // The download ended: whoever waits for the fetches to drain goes on.
  close(): void {
    this.idleWaiter?.();
  }
}
