import { DamselflyError } from "../../common/errors.js";
import { piecePath, syncPath, type SyncMessage } from "../../protocol/index.js";
import { PieceClient } from "./piece-client.js";
import { readSyncStream } from "./sync-client.js";
import type { PieceSink } from "./piece-writer.js";
import { PieceResponse, type PieceResult, type PieceVerifier } from "./piece-response.js";
import type { Throttle } from "../../common/token-bucket.js";
import type { ConnectionOptions } from "node:tls";

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
  // Mutual TLS to parents: options for each new connection.
  tls?: (() => ConnectionOptions) | undefined;
  // With TLS: each piece's digest record and bytes are checked.
  verify?: PieceVerifier | undefined;
  // Whether an ad for piece n of `length` bytes fits the task's geometry
  // (task-geometry.ts pieceFits); a parent whose ad does not is dropped.
  fits?: ((n: number, length: number) => boolean) | undefined;
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
  private readonly tls: (() => ConnectionOptions) | undefined;
  private readonly verify: PieceVerifier | undefined;
  private readonly fits: ((n: number, length: number) => boolean) | undefined;

  constructor(
    readonly addr: ParentAddress,
    private readonly taskId: string,
    opts: ParentConnOptions,
  ) {
    this.reads = opts.reads;
    this.throttle = opts.throttle;
    this.childId = opts.childId;
    this.tls = opts.tls;
    this.verify = opts.verify;
    this.fits = opts.fits;
    this.timeouts = { connectMs: Math.min(opts.pieceTimeoutMs, 5_000), headMs: opts.pieceTimeoutMs };
    this.pieceClient = new PieceClient(addr.ip, addr.port, {
      maxConnections: opts.piecesPerParent,
      connectTimeoutMs: this.timeouts.connectMs,
      idleTimeoutMs: opts.pieceTimeoutMs,
      tls: opts.tls,
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
        tls: this.tls,
      },
      (msg) => {
        if (msg.type === "pieces") this.advertised(msg.pieces);
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

  // A "pieces" message: a piece that cannot be the task's (past its end, or
  // longer than a piece) ends the stream, and the parent is dropped before
  // anything is written or allocated for it.
  private advertised(pieces: Array<[number, number, number]>): void {
    for (const [n, crc, length] of pieces) {
      if (this.fits && !this.fits(n, length)) {
        throw new DamselflyError("DF_ERR_GEOMETRY_INVALID", `parent ${this.id} advertised piece ${n} of ${length} bytes, which is not the task's`);
      }
      this.pieces.set(n, { crc, length });
    }
  }

  // Downloads one piece straight into the task file; resolves with the
  // verified CRC (and with TLS the checked digest record), rejects on HTTP
  // error, short body, CRC or digest mismatch.
  fetchPiece(task: PieceSink, n: number, offset: number, signal?: AbortSignal): Promise<PieceResult> {
    const ad = this.pieces.get(n);
    if (!ad) return Promise.reject(new DamselflyError("DF_ERR_PIECE_NOT_FOUND", `parent ${this.id} does not have piece ${n}`));
    // Advertised before the geometry was known: checked again against it.
    if (this.fits && !this.fits(n, ad.length)) {
      return Promise.reject(new DamselflyError("DF_ERR_GEOMETRY_INVALID", `parent ${this.id}'s piece ${n} of ${ad.length} bytes is not the task's`));
    }
    const target = {
      parentId: this.id,
      n,
      offset,
      ad,
      sink: task,
      reads: this.reads,
      throttle: this.throttle,
      verify: this.verify,
      tlsReads: this.tls !== undefined,
    };
    const got = (micros: number): void => {
      this.busyStreak = 0;
      this.recordRate(ad.length, micros);
    };
    const path = piecePath(this.taskId, n, this.childId);
    return new Promise((resolve, reject) => {
      const res = new PieceResponse(target, { got, forget: () => this.pieces.delete(n), resolve, reject }, signal);
      if (!res.settled) res.send((handler) => this.pieceClient.get(path, handler));
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.syncAbort.abort();
    this.pieceClient.close();
  }
}
