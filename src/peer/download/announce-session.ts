import { Code, type ConnectError } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import { fromConnectError, type schedulerv1 } from "../../protocol/index.js";
import type { OpenStream } from "./announce-stream.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];

export interface SessionHandlers {
  // The registration as of now (pieces held, whether the origin is being
  // fetched): sent first on every stream the session opens.
  register: () => Req;
  onResponse: (r: schedulerv1.AnnouncePeerResponse) => void;
  // Another scheduler took the download over; it heard the registration.
  onAttached?: (scheduler: string) => void;
  // No scheduler holds the download now (all down, or one refused it): it
  // goes on with the parents it has until a scheduler is back.
  onDetached: (e: DamselflyError) => void;
}

// What a session asks of the link: a stream on the task's scheduler (the
// first healthy one in the task's ring order), and word of a broken one.
// What a download holds: the scheduler it talks to now, and its messages.
export interface AnnounceSession {
  readonly scheduler: string | undefined;
  send(req: Req): void;
  close(): void;
}

export interface SessionHost {
  attach(s: FailoverSession): Promise<OpenStream | undefined>;
  // The scheduler attach() would try first for this task.
  preferred(taskId: string): string | undefined;
  // The stream on `address` ended; `fault`: it broke (the scheduler is
  // down or hung), not ended or refused by a working scheduler.
  streamEnded(s: FailoverSession, address: string, fault: boolean): void;
  forget(s: FailoverSession): void;
}

// Errors that say the scheduler (or the way to it) failed, not that it
// refused this stream: the task moves to the next scheduler.
const FAULTS = new Set<Code>([Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Internal, Code.Aborted, Code.Canceled]);

export function isSchedulerFault(err: ConnectError): boolean {
  return FAULTS.has(err.code);
}

// Streams a scheduler ended (no error) with no answer in between before the
// session gives up on schedulers: one that takes the registration and ends
// the stream again and again must not make it spin.
const MAX_SILENT_ENDS = 3;
// Messages held while the session moves (a bound: piece reports of a fast
// download; the registration counts them anyway).
const MAX_HELD = 256;

const isPieceReport = (r: Req): boolean => r.case === "pieceFinished" || r.case === "piecesFinished";

// One download's conversation with the schedulers, across failures: the
// announce stream lives on the task's scheduler; when that one dies, hangs
// or restarts, the session registers again (with the pieces it holds) on the
// next scheduler of the task's ring, and moves back when the first is
// healthy again, so every peer of a task keeps meeting the same scheduler.
export class FailoverSession implements AnnounceSession {
  private stream: OpenStream | undefined;
  private moving: Promise<void> | undefined;
  private closed = false;
  private silentEnds = 0;
  // Sent while moving: delivered to the next scheduler after its registration.
  private held: Req[] = [];

  constructor(
    readonly taskId: string,
    readonly peerId: string,
    readonly headers: Record<string, string>,
    private readonly h: SessionHandlers,
    private readonly host: SessionHost,
  ) {}

  // The scheduler the stream is open to; undefined while none is.
  get scheduler(): string | undefined {
    return this.stream?.address;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // The registration for a new stream. It counts every piece held now, so
  // piece reports held until now would count twice.
  registration(): Req {
    this.held = this.held.filter((r) => !isPieceReport(r));
    return this.h.register();
  }

  // A scheduler answered on the stream.
  answered(r: schedulerv1.AnnouncePeerResponse): void {
    if (this.closed) return;
    this.silentEnds = 0;
    this.h.onResponse(r);
  }

  send(req: Req): void {
    if (this.closed) return;
    if (this.stream) this.stream.send(req);
    else if (this.moving && this.held.length < MAX_HELD) this.held.push(req);
  }

  private deliverHeld(to: OpenStream): void {
    for (const r of this.held) to.send(r);
    this.held = [];
  }

  // The first stream, opened by the link.
  adopt(stream: OpenStream): void {
    this.use(stream);
  }

  private use(stream: OpenStream): void {
    this.stream = stream;
    stream.watch((err) => this.ended(stream, err));
  }

  // The stream ended under us (not by close()).
  private ended(stream: OpenStream, err: ConnectError | undefined): void {
    if (this.closed || this.stream !== stream) return;
    this.stream = undefined;
    const fault = err !== undefined && isSchedulerFault(err);
    if (err !== undefined && !fault) {
      this.host.forget(this);
      this.h.onDetached(fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE"));
      return;
    }
    if (!fault && ++this.silentEnds > MAX_SILENT_ENDS) {
      this.host.forget(this);
      this.h.onDetached(new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", "the scheduler keeps ending the announce stream"));
      return;
    }
    this.host.streamEnded(this, stream.address, fault);
  }

  // Opens a stream on the task's scheduler as the link now sees it, then
  // closes the old one (if any). Concurrent calls share one move.
  move(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.moving ??= this.doMove().finally(() => (this.moving = undefined));
    return this.moving;
  }

  private async doMove(): Promise<void> {
    const old = this.stream;
    if (old && old.address === this.host.preferred(this.taskId)) return;
    let next: OpenStream | undefined;
    try {
      next = await this.host.attach(this);
    } catch (err) {
      // A scheduler refused the registration.
      if (!this.closed && !old) this.h.onDetached(DamselflyError.from(err));
      return;
    }
    if (this.closed) {
      // The download ended while moving: its last word (finished, failed)
      // still reaches the scheduler that now holds its registration.
      if (next) {
        this.deliverHeld(next);
        next.close(true);
      }
      return;
    }
    if (!next) {
      this.held = [];
      if (!old) this.h.onDetached(new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", "no scheduler is reachable"));
      return;
    }
    old?.close(false);
    this.use(next);
    this.deliverHeld(next);
    if (this.stream === next) this.h.onAttached?.(next.address);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Kept: `scheduler` still names the one that heard the last messages.
    this.stream?.close(true);
    this.host.forget(this);
  }
}
