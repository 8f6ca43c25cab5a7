import { DamselflyError } from "../../common/errors.js";
import { piecePath, syncPath, type SyncMessage } from "../../protocol/index.js";
import type { LocalTask } from "../storage/local-task.js";
import { PieceClient } from "./piece-client.js";
import { readSyncStream } from "./sync-client.js";
import { PieceWriter, type PieceSink } from "./piece-writer.js";
import type { Throttle } from "../../common/token-bucket.js";

// Unwritten bytes per piece in flight from a parent (16 in flight: 32 MiB).
const PARENT_WRITE_WINDOW = 2 * 1024 * 1024;

export interface ParentAddress {
  peerId: string;
  hostId: string;
  ip: string;
  port: number;
  isSeed: boolean;
}

export interface PieceAd {
  crc: number;
  length: number;
}

// Each read costs tens of microseconds of JS and system time whatever its
// size, and a child streaming from many parents at once sees each connection
// at a fraction of its link: reads of one or two packets, tens of thousands
// per piece set. After a read smaller than GATHER_BYTES the connection stops
// reading for about as long as it takes this connection to gather that much
// (or the rest of the piece, if less) at its measured rate, between the
// bounds (none at all when that is under GATHER_MIN_MS), so the next read is
// one big one. The kernel's receive buffer holds it; the sender never idles
// for it, and a piece's last bytes are read as soon as they should be there.
// Testbed, N=16 at 25 Mbit/s: 32 KiB / 60 ms → 26 CPU-s per GiB sent;
// 256 KiB / 250 ms with the tail rule → 21, same times.
const GATHER_BYTES = 256 * 1024;
const GATHER_MIN_MS = 2;
const GATHER_MAX_MS = 250;

// Busy is routine flow control (many times a second in a big swarm): one
// shared error, no stack trace captured per answer.
const BUSY = new DamselflyError("DF_ERR_UPLOAD_BUSY", "parent's upload slots are all busy", { temporary: true });

export interface ParentConnOptions {
  piecesPerParent: number;
  pieceTimeoutMs: number;
  // Counts network reads of piece bodies: the CPU cost of moving data is
  // mostly per read, so this is the figure to watch.
  reads?: { pieceReads: number };
  // Rate limits every piece read counts against (the task's and the host's).
  throttle?: Throttle | undefined;
  // This download's peer ID, sent with every request (`?peer=`): a seed peer
  // in initial seeding matches requests to the pieces it suggested.
  childId?: string | undefined;
}

// One parent as seen by a child: its advertised pieces (from its sync stream),
// requests in flight, and measured throughput. Fetches go over a small
// keep-alive connection pool.
export class ParentConn {
  readonly pieces = new Map<number, PieceAd>();
  inFlight = 0;
  failures = 0;
  piecesServed = 0;
  // Recent per-request speed (EWMA over pieces, bytes/µs) and when it was
  // last measured: comparisons between parents only mean something when made
  // over the same stretch of time (a parent measured while the swarm was idle
  // looks 10x faster than one measured while every link is full).
  rate = 0;
  ratedAt = 0;
  closed = false;
  done = false;
  // Told "busy" (all upload slots taken): not asked again before this time.
  busyUntil = 0;
  // A seed in initial seeding: the pieces it asked us to take from it; no
  // others are asked of it (unless a local reader waits) until it says the
  // suggestions are over (undefined again).
  suggested: Set<number> | undefined;
  private readonly childId: string | undefined;
  private busyStreak = 0;
  private readonly timeouts: { connectMs: number; headMs: number };
  private readonly pieceClient: PieceClient;
  private readonly syncAbort = new AbortController();

  private readonly reads: { pieceReads: number } | undefined;
  private readonly throttle: Throttle | undefined;

  constructor(readonly addr: ParentAddress, private readonly taskId: string, opts: ParentConnOptions) {
    this.reads = opts.reads;
    this.throttle = opts.throttle;
    this.childId = opts.childId;
    this.timeouts = { connectMs: Math.min(opts.pieceTimeoutMs, 5_000), headMs: opts.pieceTimeoutMs };
    this.pieceClient = new PieceClient(addr.ip, addr.port, {
      maxConnections: opts.piecesPerParent,
      connectTimeoutMs: this.timeouts.connectMs,
      idleTimeoutMs: opts.pieceTimeoutMs,
    });
  }

  get id(): string {
    return this.addr.peerId;
  }

  // Bytes per microsecond per request; optimistic for parents not yet measured.
  get throughput(): number {
    return this.rate > 0 ? this.rate : this.addr.isSeed ? 2000 : 1000;
  }

  private recordRate(bytes: number, micros: number): void {
    if (micros <= 0) return;
    const sample = bytes / micros;
    this.rate = this.rate === 0 ? sample : this.rate * 0.7 + sample * 0.3;
    this.ratedAt = Date.now();
  }

  // Backs off from a parent whose upload slots are all taken: 50 ms, doubling
  // to 1.6 s while it stays busy, with jitter so its children do not return
  // in step. Any piece it serves resets the streak.
  markBusy(now = Date.now()): void {
    const base = Math.min(50 * 2 ** this.busyStreak, 1_600);
    this.busyStreak = Math.min(this.busyStreak + 1, 8);
    this.busyUntil = now + base * (0.75 + Math.random() * 0.5);
  }

  // Runs the sync stream, calling onMessage for each message; resolves when
  // the parent finished sending (done) and rejects when the stream breaks.
  async sync(onMessage: (msg: SyncMessage) => void): Promise<void> {
    let ended = false;
    await readSyncStream(
      {
        host: this.addr.ip,
        port: this.addr.port,
        path: syncPath(this.taskId, this.childId),
        connectTimeoutMs: this.timeouts.connectMs,
        headTimeoutMs: this.timeouts.headMs,
        // Parents ping every 15 s; a silent parent is a dead parent.
        idleTimeoutMs: 60_000,
        signal: this.syncAbort.signal,
        label: this.id,
      },
      (msg) => {
        if (msg.type === "pieces") for (const [n, crc, length] of msg.pieces) this.pieces.set(n, { crc, length });
        else if (msg.type === "suggest") {
          // An empty list too: suggestions are on, ask only for what is named.
          const set = (this.suggested ??= new Set());
          for (const n of msg.pieces) set.add(n);
        } else if (msg.type === "suggest-end") this.suggested = undefined;
        onMessage(msg);
        if (msg.type === "done" || msg.type === "failed") {
          this.done = msg.type === "done";
          ended = true;
        }
        return ended;
      },
    );
    if (!ended) throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.id} closed its sync stream early`);
  }

  // Downloads one piece straight into the task file; resolves with the
  // verified CRC, rejects on HTTP error, short body or CRC mismatch.
  // Driven by undici's dispatch callbacks rather than a body stream: on slow
  // links a piece arrives in thousands of small reads, and a stream plus an
  // async iterator per read cost more CPU than moving the bytes.
  fetchPiece(task: PieceSink, n: number, offset: number, signal?: AbortSignal): Promise<{ crc: number; length: number }> {
    const ad = this.pieces.get(n);
    if (!ad) return Promise.reject(new DamselflyError("DF_ERR_PIECE_NOT_FOUND", `parent ${this.id} does not have piece ${n}`));
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      let status = 0;
      let writer: PieceWriter | undefined;
      let settled = false;
      let abortReq: ((reason: Error) => void) | undefined;
      let bodyAt = 0;
      const onAbort = (): void => abortReq?.(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
      const settle = (err: unknown, value?: { crc: number; length: number }): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        if (err === undefined) resolve(value!);
        else reject(err);
      };
      const broke = (err: unknown): unknown => {
        if (err instanceof DamselflyError) return err;
        // A full disk is ours, not the parent's fault.
        const local = DamselflyError.from(err);
        if (local.code === "DF_ERR_STORAGE_FULL" || local.code === "DF_ERR_STORAGE_IO") return local;
        return new DamselflyError("DF_ERR_PARENT_FAILED", `piece ${n} from parent ${this.id} broke off: ${(err as Error).message}`, { cause: err });
      };
      const finish = async (): Promise<{ crc: number; length: number }> => {
        if (status === 503) throw BUSY;
        if (status !== 200) {
          if (status === 404) this.pieces.delete(n);
          throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.id} answered piece ${n} with HTTP ${status}`, { temporary: status === 404 });
        }
        const w = writer!;
        try {
          await w.flush();
        } catch (err) {
          throw broke(err);
        }
        if (!w.complete) throw new DamselflyError("DF_ERR_PARENT_FAILED", `piece ${n} from parent ${this.id} was cut short (${w.received}/${ad.length} bytes)`);
        if (w.crc !== ad.crc) {
          this.pieces.delete(n);
          throw new DamselflyError("DF_ERR_PIECE_CORRUPT", `piece ${n} from parent ${this.id} failed its CRC-32 check`);
        }
        this.busyStreak = 0;
        this.recordRate(ad.length, Number(process.hrtime.bigint() - started) / 1000);
        return { crc: w.crc, length: ad.length };
      };
      if (signal?.aborted) return settle(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      const req = this.pieceClient.get(piecePath(this.taskId, n, this.childId), {
        onStart: (statusCode) => {
          status = statusCode;
          if (status === 200) {
            writer = new PieceWriter(task, offset, ad.length, PARENT_WRITE_WINDOW);
            bodyAt = performance.now();
          }
        },
        onData: (chunk) => {
          if (!writer || settled) return;
          if (this.reads) this.reads.pieceReads++;
          if (writer.accept(chunk) < chunk.length) {
            req.abort(new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.id} sent more than piece ${n}'s ${ad.length} bytes`));
            return;
          }
          // Bytes are counted once read; over the limit, this connection stops
          // reading until the bucket has tokens again (the parent's TCP
          // window closes meanwhile).
          const limited = this.throttle !== undefined && !this.throttle.take(chunk.length);
          if (req.paused || writer.complete) return;
          if (limited) {
            req.pause(true);
            this.throttle!.wait(() => req.resume());
          } else if (writer.overWindow) {
            req.pause();
            writer.written().then(
              () => req.resume(),
              () => req.resume(),
            );
          } else if (chunk.length < GATHER_BYTES) {
            const elapsed = performance.now() - bodyAt;
            const perMs = elapsed > 1 ? writer.received / elapsed : 0;
            const want = Math.min(GATHER_BYTES, ad.length - writer.received);
            const wait = perMs > 0 ? Math.min(GATHER_MAX_MS, want / perMs) : GATHER_MIN_MS;
            // A fast connection gathers plenty between reads anyway.
            if (wait >= GATHER_MIN_MS) {
              req.pause();
              setTimeout(() => req.resume(), wait);
            }
          }
        },
        onEnd: () => {
          finish().then(
            (v) => settle(undefined, v),
            (e: unknown) => settle(e),
          );
        },
        onError: (err) => {
          // Let writes in flight finish before the caller reuses the region.
          const w = writer;
          const fail = (): void => settle(broke(err));
          if (w) w.written().then(fail, fail);
          else fail();
        },
      });
      abortReq = (reason) => req.abort(reason);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.syncAbort.abort();
    this.pieceClient.close();
  }
}
