import { DamselflyError } from "../../common/errors.js";
import type { Throttle } from "../../common/token-bucket.js";
import type { PieceRecord } from "../../protocol/data-plane.js";
import type { PieceRequest, PieceResponseHandler } from "./piece-client.js";
import { PieceWriter, type PieceSink } from "./piece-writer.js";

// Unwritten bytes per piece in flight from a parent (16 in flight: 32 MiB).
const PARENT_WRITE_WINDOW = 2 * 1024 * 1024;

// Each read costs tens of microseconds of JS and system time whatever its
// size, and a child streaming from many parents at once sees each connection
// at a fraction of its link: reads of one or two packets. After a read
// smaller than GATHER_BYTES the connection stops reading for about as long
// as it takes this connection to gather that much (or the rest of the piece,
// if less) at its measured rate, between the bounds (none at all when that
// is under GATHER_MIN_MS), so the next read is one big one. The kernel's
// receive buffer holds it; the sender never idles for it, and a piece's last
// bytes are read as soon as they should be there. The measurements behind
// the figures: docs/decisions/piece-read-gathering.md.
const GATHER_BYTES = 256 * 1024;
const GATHER_MIN_MS = 2;
const GATHER_MAX_MS = 250;

// Busy is routine flow control (many times a second in a big swarm): one
// shared error, no stack trace captured per answer.
const BUSY = new DamselflyError("DF_ERR_UPLOAD_BUSY", "parent's upload slots are all busy", { temporary: true });

export interface PieceResult {
  crc: number;
  length: number;
  // With TLS: the piece's signed digest, checked (kept to relay it).
  trust?: PieceRecord | undefined;
}

// With TLS: checks a piece's digest record (the PIECE_DIGEST_HEADER value)
// and the SHA-256 of its bytes (TaskTrust.check); throws when either fails.
export type PieceVerifier = (n: number, length: number, sha256: string, record: string | undefined) => PieceRecord;

// The piece asked for and where its bytes go.
export interface PieceTarget {
  parentId: string;
  n: number;
  offset: number;
  // What the parent advertised for the piece.
  ad: { crc: number; length: number };
  sink: PieceSink;
  // Counts network reads of piece bodies.
  reads: { pieceReads: number } | undefined;
  // Rate limits every read counts against.
  throttle: Throttle | undefined;
  verify?: PieceVerifier | undefined;
  // Over TLS each read is one TLS record (16 KiB) however much waits in the
  // kernel, so a read's size says nothing: what one wake-up brought (the
  // records decrypted back to back) decides instead.
  tlsReads?: boolean;
}

export interface PieceOutcome {
  // The piece arrived whole and checked, `micros` after it was asked for.
  got(micros: number): void;
  // The parent no longer has the piece (404) or sent it corrupt.
  forget(): void;
  resolve(v: PieceResult): void;
  reject(err: unknown): void;
}

// One piece response from a parent, streamed straight into the task file:
// the handler PieceClient calls back for each read (no body stream: on slow
// links a piece arrives in thousands of small reads, and a stream plus an
// async iterator per read cost more CPU than moving the bytes). Settles once.
export class PieceResponse implements PieceResponseHandler {
  settled = false;
  private status = 0;
  private record: string | undefined;
  private writer: PieceWriter | undefined;
  private bodyAt = 0;
  // TLS: bytes of the records read in this wake-up, and whether the check
  // after it is scheduled.
  private burst = 0;
  private burstCheck = false;
  private req: PieceRequest | undefined;
  private readonly started = process.hrtime.bigint();

  constructor(
    private readonly t: PieceTarget,
    private readonly out: PieceOutcome,
    private readonly signal: AbortSignal | undefined,
  ) {
    if (signal?.aborted) this.settle(abortReason(signal));
    else signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  // Starts the request (`start` hands this handler to the client).
  send(start: (handler: PieceResponseHandler) => PieceRequest): void {
    this.req = start(this);
  }

  private readonly onAbort = (): void => this.req?.abort(abortReason(this.signal!));

  private settle(err: unknown, value?: PieceResult): void {
    if (this.settled) return;
    this.settled = true;
    this.signal?.removeEventListener("abort", this.onAbort);
    if (err === undefined) this.out.resolve(value!);
    else this.out.reject(err);
  }

  onStart(statusCode: number, _length: number, record?: string): void {
    this.status = statusCode;
    this.record = record;
    if (statusCode === 200) {
      this.writer = new PieceWriter(this.t.sink, this.t.offset, this.t.ad.length, PARENT_WRITE_WINDOW, this.t.verify !== undefined);
      this.bodyAt = performance.now();
    }
  }

  onData(chunk: Buffer): void {
    const { writer, req, t } = this;
    if (!writer || this.settled) return;
    if (t.reads) t.reads.pieceReads++;
    if (writer.accept(chunk) < chunk.length) {
      req!.abort(new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${t.parentId} sent more than piece ${t.n}'s ${t.ad.length} bytes`));
      return;
    }
    // Bytes are counted once read; over the limit, this connection stops
    // reading until the bucket has tokens again (the parent's TCP window
    // closes meanwhile).
    const limited = t.throttle !== undefined && !t.throttle.take(chunk.length);
    if (req!.paused || writer.complete) return;
    if (limited) {
      req!.pause(true);
      t.throttle!.wait(() => req!.resume());
    } else if (writer.overWindow) {
      req!.pause();
      writer.written().then(
        () => req!.resume(),
        () => req!.resume(),
      );
    } else if (t.tlsReads) this.afterBurst(chunk.length);
    else if (chunk.length < GATHER_BYTES) this.gather(writer, req!);
  }

  // TLS delivers one wake-up's records in one macrotask: gather once it is
  // over if it brought little. Without this, every packet that arrives wakes
  // the socket to decrypt part of a record.
  private afterBurst(n: number): void {
    this.burst += n;
    if (this.burstCheck) return;
    this.burstCheck = true;
    setImmediate(() => {
      this.burstCheck = false;
      const got = this.burst;
      this.burst = 0;
      const { writer, req } = this;
      if (!writer || !req || this.settled || req.paused || writer.complete) return;
      if (got < GATHER_BYTES) this.gather(writer, req);
    });
  }

  // Pauses reading while this connection gathers about GATHER_BYTES.
  private gather(writer: PieceWriter, req: PieceRequest): void {
    const elapsed = performance.now() - this.bodyAt;
    const perMs = elapsed > 1 ? writer.received / elapsed : 0;
    const want = Math.min(GATHER_BYTES, this.t.ad.length - writer.received);
    const wait = perMs > 0 ? Math.min(GATHER_MAX_MS, want / perMs) : GATHER_MIN_MS;
    // A fast connection gathers plenty between reads anyway.
    if (wait >= GATHER_MIN_MS) {
      req.pause();
      setTimeout(() => req.resume(), wait);
    }
  }

  onEnd(): void {
    this.finish().then(
      (v) => this.settle(undefined, v),
      (e: unknown) => this.settle(e),
    );
  }

  onError(err: Error): void {
    // Let writes in flight finish before the caller reuses the region.
    const w = this.writer;
    const fail = (): void => this.settle(this.broke(err));
    if (w) w.written().then(fail, fail);
    else fail();
  }

  private async finish(): Promise<PieceResult> {
    const { status, t } = this;
    if (status === 503) throw BUSY;
    if (status !== 200) {
      if (status === 404) this.out.forget();
      throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${t.parentId} answered piece ${t.n} with HTTP ${status}`, { temporary: status === 404 });
    }
    const w = this.writer!;
    try {
      await w.flush();
    } catch (err) {
      throw this.broke(err);
    }
    if (!w.complete)
      throw new DamselflyError("DF_ERR_PARENT_FAILED", `piece ${t.n} from parent ${t.parentId} was cut short (${w.received}/${t.ad.length} bytes)`);
    if (w.crc !== t.ad.crc) {
      this.out.forget();
      throw new DamselflyError("DF_ERR_PIECE_CORRUPT", `piece ${t.n} from parent ${t.parentId} failed its CRC-32 check`);
    }
    // A CRC the parent chose proves nothing to a child with TLS: the bytes
    // must hash to what the fetcher signed.
    let trust: PieceRecord | undefined;
    if (t.verify) {
      try {
        trust = t.verify(t.n, t.ad.length, w.sha256(), this.record);
      } catch (err) {
        this.out.forget();
        throw err;
      }
    }
    this.out.got(Number(process.hrtime.bigint() - this.started) / 1000);
    return { crc: w.crc, length: t.ad.length, trust };
  }

  private broke(err: unknown): unknown {
    if (err instanceof DamselflyError) return err;
    // A full disk is ours, not the parent's fault.
    const local = DamselflyError.from(err);
    if (local.code === "DF_ERR_STORAGE_FULL" || local.code === "DF_ERR_STORAGE_IO") return local;
    return new DamselflyError("DF_ERR_PARENT_FAILED", `piece ${this.t.n} from parent ${this.t.parentId} broke off: ${(err as Error).message}`, { cause: err });
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("aborted");
}
