import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../../common/errors.js";
import { MIN_PIECE_LENGTH } from "../../common/pieces.js";
import { formatDigest, parseDigest } from "../../common/digest.js";
import { DigestVerifier } from "./digest-verifier.js";
import type { Logger } from "../../common/logger.js";
import { SpanKind, spanUrl, startSpan, traceHeaders, type ParentLike, type Span } from "../../common/trace.js";
import { HostType, schedulerv1, fromErrorDetail, toErrorDetail, type Download } from "../../protocol/index.js";
import type { LocalTask } from "../storage/local-task.js";
import type { HttpSource } from "../source/http-source.js";
import type { SchedulerLink, AnnounceSession } from "./scheduler-link.js";
import { ParentConn, type ParentAddress } from "./parent-conn.js";
import { fetchFromSource, type SourceFetchHooks } from "./source-fetcher.js";
import { PieceSelector } from "./piece-selector.js";
import { MemorySink } from "./piece-writer.js";
import type { DaemonMetrics } from "../metrics.js";
import type { TaskLimits } from "../rate-limits.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];

// A parent measured over this many pieces at under 1/SLOW_PARENT_RATIO of the
// best parent's throughput is dropped.
const SLOW_PARENT_MIN_PIECES = 3;
const SLOW_PARENT_RATIO = 8;
const SLOW_PARENT_WINDOW_MS = 5_000;
// With fewer parents than this left after dropping one, ask the scheduler for
// more (each ask counts toward its reschedule limit).
const MIN_PARENTS = 2;
// With this few pieces missing, all of them in flight and room for more,
// the slowest in-flight pieces are also asked of a second parent (endgame):
// the first copy to arrive wins. The duplicate lands in memory and reaches
// the file only once the original request is stopped and its writes drained.
const ENDGAME_PIECES = 4;
// ...and only pieces in flight this long (a duplicate that loses wastes a
// parent's upload).
const ENDGAME_MIN_AGE_MS = 1_000;
// See maxInFlight().
const PIECE_TARGET_MS = 2_000;

export interface PeerTaskOptions {
  task: LocalTask;
  download: Download;
  peerId: string;
  hostId: string;
  scheduler: SchedulerLink | undefined;
  source: HttpSource;
  logger: Logger;
  piecesInFlight: number;
  piecesPerParent: number;
  pieceTimeoutMs: number;
  scheduleTimeoutMs: number;
  metrics?: DaemonMetrics | undefined;
  // The request that started this download (its span is the parent).
  trace?: ParentLike;
  // Rate limits of this download (task and host buckets); none: unlimited.
  limits?: TaskLimits;
}

export interface PeerTaskStats {
  bytesFromPeers: number;
  bytesFromSource: number;
  backToSource: boolean;
  schedulerUnavailable: boolean;
  // Piece requests a parent answered "busy".
  busyAnswers: number;
  // Pieces an endgame duplicate delivered first.
  endgameWins: number;
  pieceReads: number;
}

// Conducts one task download on this daemon: talks to the scheduler over one
// announce stream, keeps a set of parents (each with a sync stream telling
// which pieces it holds), pulls pieces from several parents at once, and goes
// to the origin only when the scheduler says so or cannot be reached.
export class PeerTask {
  readonly stats: PeerTaskStats = { bytesFromPeers: 0, bytesFromSource: 0, backToSource: false, schedulerUnavailable: false, busyAnswers: 0, endgameWins: 0, pieceReads: 0 };
  private readonly parents = new Map<string, ParentConn>();
  private readonly blocklist = new Set<string>();
  private readonly inFlight = new Map<number, string>();
  // Requests in flight from the first parent asked, stoppable by an endgame
  // duplicate, and the duplicates themselves.
  private readonly fetches = new Map<number, { ctrl: AbortController; done: Promise<void>; at: number }>();
  private readonly dups = new Map<number, AbortController>();
  private readonly selector: PieceSelector<ParentConn>;
  private session: AnnounceSession | undefined;
  private readonly abort = new AbortController();
  private settle!: { resolve: () => void; reject: (e: DamselflyError) => void };
  private readonly finished: Promise<void>;
  private sourceRunning = false;
  private resumedPieces = 0;
  private idleWaiter: (() => void) | undefined;
  private ended = false;
  private completing = false;
  private verifier: DigestVerifier | undefined;
  private advisory: DigestVerifier | undefined;
  private lastProgress = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  // Wakes pump() when a busy parent may take requests again.
  private busyRetry: NodeJS.Timeout | undefined;
  private pumpQueued = false;
  private readonly log: Logger;
  // One span for the download, one per back-to-source run and one per parent
  // (its pieces summed up): never one per piece.
  private readonly span: Span;
  private sourceSpan: Span | undefined;
  private readonly parentSpans = new Map<string, Span>();

  constructor(private readonly o: PeerTaskOptions) {
    this.log = o.logger.child({ taskId: o.task.id, peerId: o.peerId });
    this.finished = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.finished.catch(() => undefined);
    this.selector = new PieceSelector(o.task, o.piecesPerParent);
    this.span = startSpan("peer download", {
      parent: o.trace,
      attributes: { "damselfly.task_id": o.task.id, "damselfly.peer_id": o.peerId, "damselfly.host_id": o.hostId, "url.full": spanUrl(o.download.url) },
    });
  }

  get task(): LocalTask {
    return this.o.task;
  }

  // Resolves when every piece is stored and verified; rejects with the reason
  // the download failed (every failure also reaches the task's readers).
  async run(): Promise<void> {
    this.o.metrics?.downloadStarted();
    try {
      await this.start();
    } catch (err) {
      this.fail(DamselflyError.from(err));
    }
    return this.finished;
  }

  private async start(): Promise<void> {
    this.o.task.failure = undefined;
    this.resumedPieces = this.o.task.verified ? 0 : this.o.task.pieces.size;
    await this.o.task.prepareForWrites();
    const d = this.o.download;
    if (d.digestTaskId && d.digest && !this.o.task.meta.digestVerified) this.verifier = new DigestVerifier(this.o.task, parseDigest(d.digest));
    else if (!d.digestTaskId && d.digest && this.resumedPieces === 0) {
      // A URL task whose requester named a digest: hash it while it arrives
      // (off the critical path) instead of after the last byte. The verdict
      // is the requester's business, not the task's: others may ask for the
      // same URL with another digest or none.
      this.advisory = new DigestVerifier(this.o.task, parseDigest(d.digest));
    }
    this.watchdog = setInterval(() => this.checkStall(), 1_000);
    this.watchdog.unref();
    if (this.o.task.isComplete()) {
      await this.complete();
      return;
    }
    const session = this.o.scheduler ? await this.o.scheduler.open(this.o.task.id, this.o.peerId, (r) => this.onResponse(r), (e) => this.onSchedulerLost(e), traceHeaders(this.span)) : undefined;
    if (!session) {
      if (this.o.download.disableBackToSource) {
        this.fail(new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", "scheduler unreachable and back-to-source is disabled"));
        return;
      }
      this.stats.schedulerUnavailable = true;
      this.log.warn("scheduler unreachable: downloading directly from the origin");
      this.startBackToSource("scheduler unreachable");
      return;
    }
    this.session = session;
    this.send({ case: "registerPeer", value: create(schedulerv1.RegisterPeerRequestSchema, { download: this.o.download, finishedPieces: this.o.task.pieces.size }) });
  }

  private send(req: Req): void {
    this.session?.send(req);
  }

  private onResponse(res: schedulerv1.AnnouncePeerResponse): void {
    if (this.ended) return;
    const r = res.response;
    switch (r.case) {
      case "normalTask": {
        const info = r.value.task;
        if (info?.contentLengthKnown && !this.o.task.infoKnown) {
          this.setInfo(Number(info.contentLength), Number(info.pieceLength)).catch((e) => this.fail(DamselflyError.from(e)));
        }
        for (const p of r.value.candidateParents) this.addParent({ peerId: p.peerId, hostId: p.hostId, ip: p.ip, port: p.uploadPort, isSeed: p.hostType === HostType.SEED });
        this.send({ case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema) });
        break;
      }
      case "needBackToSource":
        this.startBackToSource(r.value.description || "scheduler asked");
        break;
      case "emptyTask":
        this.setInfo(0, this.o.download.pieceLength ? Number(this.o.download.pieceLength) : MIN_PIECE_LENGTH)
          .then(() => this.complete())
          .catch((e) => this.fail(DamselflyError.from(e)));
        break;
      case "taskFailed":
        this.fail(fromErrorDetail(r.value.error));
        break;
      case "localHit":
        // The scheduler counts our resumed pieces as the whole task; trust our
        // own store when it disagrees.
        if (this.o.task.isComplete()) this.complete().catch((e) => this.fail(DamselflyError.from(e)));
        else this.fallbackToSource("scheduler reported a local hit but pieces are missing");
        break;
    }
  }

  private onSchedulerLost(err: DamselflyError): void {
    if (this.ended) return;
    this.session = undefined;
    this.log.warn({ err: err.message }, "lost the scheduler stream; continuing with current parents");
    if (this.parents.size === 0 && !this.sourceRunning) this.fallbackToSource("scheduler stream lost and no parent");
  }

  private addParent(addr: ParentAddress): void {
    if (this.parents.has(addr.peerId) || this.blocklist.has(addr.peerId) || addr.peerId === this.o.peerId) return;
    const conn = new ParentConn(addr, this.o.task.id, { piecesPerParent: this.o.piecesPerParent, pieceTimeoutMs: this.o.pieceTimeoutMs, reads: this.stats, throttle: this.o.limits?.fromParents, childId: this.o.peerId });
    this.parents.set(addr.peerId, conn);
    if (this.span.recording) {
      this.parentSpans.set(addr.peerId, startSpan("pieces from parent", {
        kind: SpanKind.CLIENT,
        parent: this.span,
        attributes: { "damselfly.parent_peer_id": addr.peerId, "damselfly.parent_host_id": addr.hostId, "server.address": addr.ip, "server.port": addr.port, "damselfly.seed": addr.isSeed },
      }));
    }
    this.log.debug({ parent: addr.peerId, remote: `${addr.ip}:${addr.port}` }, "parent added");
    conn
      .sync((msg) => {
        if (msg.type === "info" && msg.pieceLength > 0 && msg.contentLength >= 0) {
          this.setInfo(msg.contentLength, msg.pieceLength).catch((e) => this.fail(DamselflyError.from(e)));
        } else if (msg.type === "info" && msg.pieceLength > 0 && this.o.task.meta.pieceLength === 0) {
          this.o.task.setInfo(-1, msg.pieceLength).catch(() => undefined);
        }
        if (msg.type === "failed") {
          const e = new DamselflyError(DamselflyError.isCode(msg.code) ? msg.code : "DF_ERR_PARENT_FAILED", msg.message, msg.sourceStatus ? { sourceStatus: msg.sourceStatus } : {});
          // An origin failure on the seed is everyone's failure.
          if (e.code === "DF_ERR_SOURCE_STATUS" && conn.addr.isSeed) this.fail(e);
          else this.dropParent(conn, e.message);
          return;
        }
        this.schedulePump();
      })
      .then(() => this.schedulePump())
      .catch((err) => {
        if (!conn.closed) this.dropParent(conn, `sync stream: ${(err as Error).message}`);
      });
  }

  private dropParent(conn: ParentConn, reason: string): void {
    if (!this.parents.has(conn.id)) return;
    this.parents.delete(conn.id);
    this.blocklist.add(conn.id);
    conn.close();
    this.endParentSpan(conn, reason);
    this.log.info({ parent: conn.id, reason }, "parent dropped");
    if (this.ended || this.sourceRunning) return;
    // The scheduler decides whether the remaining parents can still feed us;
    // plenty of parents holding what we miss need no new decision.
    if (this.session) {
      if (this.parents.size < MIN_PARENTS || !this.parentsCoverMissing()) {
        this.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: [...this.blocklist], description: reason }) });
      }
    } else if (this.parents.size === 0) this.fallbackToSource("no parent left and no scheduler");
    this.pump();
  }

  private endParentSpan(conn: ParentConn, dropped?: string): void {
    const s = this.parentSpans.get(conn.id);
    if (!s) return;
    this.parentSpans.delete(conn.id);
    s.setAttribute("damselfly.pieces", conn.piecesServed).setAttribute("damselfly.failures", conn.failures).setAttribute("damselfly.dropped", dropped);
    s.end();
  }

  // Every missing piece is held by some parent, or some parent is still
  // downloading and may yet get it (or the size is unknown yet).
  private parentsCoverMissing(): boolean {
    const parents = [...this.parents.values()];
    if (!this.o.task.infoKnown) return parents.length > 0;
    if (parents.some((p) => !p.done)) return true;
    return this.o.task.missingPieces().every((n) => parents.some((p) => p.pieces.has(n)));
  }

  private async setInfo(contentLength: number, pieceLength: number): Promise<void> {
    await this.o.task.setInfo(contentLength, pieceLength);
    this.pump();
  }

  // Piece announcements arrive from every parent for every piece: one pump per
  // turn of the event loop covers them all.
  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  // Starts as many piece fetches as the limits allow.
  private pump(): void {
    if (this.ended || this.sourceRunning || this.o.task.meta.pieceLength <= 0) return;
    if (this.o.task.infoKnown && this.o.task.pieces.size === this.o.task.totalPieces) {
      this.complete().catch((e) => this.fail(DamselflyError.from(e)));
      return;
    }
    // Spread the requests: with many parents, one at a time from each keeps
    // every parent's line full without piling on the favourite.
    const maxInFlight = this.maxInFlight();
    this.selector.perParent = Math.max(1, Math.min(this.o.piecesPerParent, Math.floor(maxInFlight / Math.max(1, this.parents.size))));
    const picks = this.selector.pick(this.parents, this.inFlight, maxInFlight - this.inFlight.size - this.dups.size);
    for (const pick of picks) this.fetchPiece(pick.piece, pick.parent);
    if (picks.length === 0) this.endgame();
    if (this.inFlight.size < maxInFlight) this.retryWhenNotBusy();
    if (this.inFlight.size === 0) this.dropDeadEnds();
  }

  // Under a rate limit, only as many pieces at once as arrive within about
  // PIECE_TARGET_MS: the limit is shared by every piece in flight, and 16
  // pieces crawling in together would each take minutes at a low limit (no
  // piece to pass on, and a proxied pull would think P2P stalled).
  private maxInFlight(): number {
    const rate = this.o.limits?.rate ?? 0;
    const pieceLength = this.o.task.meta.pieceLength;
    if (rate <= 0 || pieceLength <= 0) return this.o.piecesInFlight;
    return Math.max(1, Math.min(this.o.piecesInFlight, Math.ceil((rate * PIECE_TARGET_MS) / 1000 / pieceLength)));
  }

  // Some parent said busy and is why we fetch less than we could: try again
  // once the first of them may have a free slot.
  private retryWhenNotBusy(): void {
    if (this.busyRetry) return;
    const now = Date.now();
    let soonest = Infinity;
    for (const p of this.parents.values()) if (p.busyUntil > now && p.busyUntil < soonest) soonest = p.busyUntil;
    if (soonest === Infinity) return;
    this.busyRetry = setTimeout(() => {
      this.busyRetry = undefined;
      this.pump();
    }, Math.ceil(soonest - now));
  }

  // A parent far slower than the best one holds back the whole download
  // (its pieces arrive last): drop it once measured, unless some piece we
  // miss can only come from it. Only recent measurements are compared.
  private dropIfSlow(parent: ParentConn): void {
    if (this.parents.size < 2 || parent.piecesServed < SLOW_PARENT_MIN_PIECES) return;
    const recent = Date.now() - SLOW_PARENT_WINDOW_MS;
    let best = 0;
    for (const p of this.parents.values()) if (p.piecesServed >= SLOW_PARENT_MIN_PIECES && p.ratedAt >= recent) best = Math.max(best, p.throughput);
    if (parent.throughput * SLOW_PARENT_RATIO >= best) return;
    for (const n of this.o.task.missingPieces()) {
      if (!parent.pieces.has(n)) continue;
      let elsewhere = false;
      for (const p of this.parents.values()) if (p !== parent && p.pieces.has(n)) elsewhere = true;
      if (!elsewhere) return;
    }
    this.dropParent(parent, `slow parent: ${(parent.throughput).toFixed(2)} vs best ${best.toFixed(2)} bytes/µs`);
  }

  // Parents that finished sending yet lack pieces we miss (they dropped a
  // corrupt one) will never help again: drop them now rather than waiting for
  // the stall timer.
  private dropDeadEnds(): void {
    const t = this.o.task;
    if (!t.infoKnown || this.parents.size === 0) return;
    // Runs on every idle pump: the list of missing pieces only when needed.
    let missing: number[] | undefined;
    for (const p of [...this.parents.values()]) {
      if (!p.done || p.pieces.size >= t.totalPieces) continue;
      missing ??= t.missingPieces();
      if (missing.some((n) => !p.pieces.has(n))) this.dropParent(p, "finished parent lacks pieces we miss");
    }
  }

  private fetchPiece(n: number, parent: ParentConn): void {
    this.inFlight.set(n, parent.id);
    parent.inFlight++;
    const offset = n * this.o.task.meta.pieceLength;
    const started = process.hrtime.bigint();
    const ctrl = new AbortController();
    const done = parent
      .fetchPiece(this.o.task, n, offset, AbortSignal.any([this.abort.signal, ctrl.signal]))
      .then(async ({ crc, length }) => {
        this.dups.get(n)?.abort();
        if (this.o.task.pieces.has(n)) return;
        await this.storedFromParent(n, crc, length, parent, started);
        parent.failures = 0;
        this.dropIfSlow(parent);
      })
      .catch((err) => {
        // Stopped because an endgame duplicate got here first.
        if (this.ended || ctrl.signal.aborted) return;
        const e = DamselflyError.from(err, "DF_ERR_PARENT_FAILED");
        // Busy is the parent's normal flow control, not a failure to report.
        if (e.code === "DF_ERR_UPLOAD_BUSY") {
          this.stats.busyAnswers++;
          parent.markBusy();
          return;
        }
        this.send({ case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: n, parentId: parent.id, reason: e.message, temporary: e.temporary }) });
        if (e.code === "DF_ERR_STORAGE_FULL" || e.code === "DF_ERR_STORAGE_IO") {
          this.fail(e);
          return;
        }
        if (!e.temporary) {
          parent.failures++;
          this.log.info({ parent: parent.id, piece: n, err: e.message }, "piece failed; retrying elsewhere");
          if (e.code === "DF_ERR_PIECE_CORRUPT" || parent.failures >= 3) this.dropParent(parent, e.message);
        }
      })
      .finally(() => {
        this.fetches.delete(n);
        this.inFlight.delete(n);
        parent.inFlight--;
        if (this.inFlight.size === 0) this.idleWaiter?.();
        this.schedulePump();
      });
    this.fetches.set(n, { ctrl, done, at: Date.now() });
  }

  // A piece from `parent` is in the file and checked: record and report it.
  private async storedFromParent(n: number, crc: number, length: number, parent: ParentConn, started: bigint): Promise<void> {
    this.stats.bytesFromPeers += length;
    await this.o.task.markPiece({ number: n, crc, length });
    this.lastProgress = Date.now();
    parent.piecesServed++;
    const micros = (process.hrtime.bigint() - started) / 1000n;
    this.o.metrics?.piece("peer", length, Number(micros) / 1e6);
    if (this.log.isLevelEnabled("debug")) this.log.debug({ piece: n, parent: parent.id, seed: parent.addr.isSeed, ms: Number(micros / 1000n) }, "piece from parent");
    this.send({ case: "pieceFinished", value: create(schedulerv1.PieceFinishedRequestSchema, { number: n, length: BigInt(length), crc32: crc, parentId: parent.id, costMicros: micros }) });
  }

  // Asks a second parent for the oldest pieces in flight when only a few are
  // missing (see ENDGAME_PIECES).
  private endgame(): void {
    const t = this.o.task;
    if (!t.infoKnown || this.inFlight.size === 0 || t.totalPieces - t.pieces.size > ENDGAME_PIECES) return;
    const now = Date.now();
    for (const [n, from] of this.inFlight) {
      if (this.inFlight.size + this.dups.size >= this.maxInFlight()) return;
      const f = this.fetches.get(n);
      if (this.dups.has(n) || !f || now - f.at < ENDGAME_MIN_AGE_MS) continue;
      let best: ParentConn | undefined;
      for (const p of this.parents.values()) {
        if (p.id === from || !p.pieces.has(n) || p.inFlight >= this.selector.perParent || p.busyUntil > now) continue;
        if (!best || p.throughput > best.throughput) best = p;
      }
      if (best) this.fetchDuplicate(n, best);
    }
  }

  private fetchDuplicate(n: number, parent: ParentConn): void {
    const t = this.o.task;
    const { offset, length: size } = t.pieceRange(n);
    const ctrl = new AbortController();
    const sink = new MemorySink(offset, size);
    this.dups.set(n, ctrl);
    parent.inFlight++;
    const started = process.hrtime.bigint();
    parent
      .fetchPiece(sink, n, offset, AbortSignal.any([this.abort.signal, ctrl.signal]))
      .then(async ({ crc, length }) => {
        const orig = this.fetches.get(n);
        if (this.ended || t.pieces.has(n) || !orig) return;
        // Stop the original and let its writes land before ours.
        orig.ctrl.abort();
        await orig.done;
        if (this.ended || t.pieces.has(n) || this.inFlight.has(n)) return;
        this.inFlight.set(n, parent.id);
        try {
          await t.writev(offset, [sink.buf]);
          this.stats.endgameWins++;
          await this.storedFromParent(n, crc, length, parent, started);
        } finally {
          this.inFlight.delete(n);
        }
      })
      // A duplicate that fails or loses changes nothing: the original goes on.
      .catch(() => undefined)
      .finally(() => {
        this.dups.delete(n);
        parent.inFlight--;
        this.schedulePump();
      });
  }

  // Resolves once no piece is being fetched from a parent (or the task ended).
  private noneInFlight(): Promise<void> {
    if (this.inFlight.size === 0 || this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiter = () => {
        this.idleWaiter = undefined;
        resolve();
      };
    });
  }

  private fallbackToSource(reason: string): void {
    if (this.o.download.disableBackToSource) {
      this.fail(new DamselflyError("DF_ERR_NO_PARENT", `no parent can serve task ${this.o.task.id} (${reason}) and back-to-source is disabled`));
      return;
    }
    this.startBackToSource(reason);
  }

  private startBackToSource(reason: string): void {
    if (this.sourceRunning || this.ended) return;
    this.sourceRunning = true;
    if (!this.stats.backToSource) this.o.metrics?.backToSourceStarted();
    this.stats.backToSource = true;
    this.log.info({ reason }, "fetching from the origin");
    const d = this.o.download;
    this.sourceSpan?.end();
    const sourceSpan = (this.sourceSpan = startSpan("back-to-source", { kind: SpanKind.CLIENT, parent: this.span, attributes: { "url.full": spanUrl(d.url), "damselfly.reason": reason } }));
    const task = this.o.task;
    if (task.infoKnown) this.announceBackToSource(task.meta.contentLength, task.meta.pieceLength, true);
    const hooks: SourceFetchHooks = {
      onInfo: async (contentLength, pieceLength, known) => {
        await task.setInfo(contentLength, pieceLength);
        this.announceBackToSource(contentLength, pieceLength, known);
      },
      onPiece: async (n, crc, length, costMicros) => {
        if (task.pieces.has(n)) return;
        this.stats.bytesFromSource += length;
        this.o.metrics?.piece("origin", length, costMicros / 1e6);
        await task.markPiece({ number: n, crc, length });
        this.lastProgress = Date.now();
        this.send({ case: "pieceFinished", value: create(schedulerv1.PieceFinishedRequestSchema, { number: n, length: BigInt(length), crc32: crc, costMicros: BigInt(Math.round(costMicros)) }) });
      },
      isDone: (n) => task.pieces.has(n) || this.inFlight.has(n),
      onBytes: (offset, chunk) => {
        this.verifier?.feed(offset, chunk);
        this.advisory?.feed(offset, chunk);
      },
    };
    fetchFromSource({ source: this.o.source, task, url: d.url, headers: { ...d.headers }, userPieceLength: Number(d.pieceLength), hooks, signal: this.abort.signal, throttle: this.o.limits?.fromSource })
      .then(async () => {
        sourceSpan.setAttribute("damselfly.bytes_from_origin", this.stats.bytesFromSource).end();
        // Pieces that were in flight from parents when we started finish on
        // their own; wait for them rather than refetching.
        await this.noneInFlight();
        if (task.infoKnown && task.pieces.size === task.totalPieces) await this.complete();
        else if (!this.ended) {
          this.sourceRunning = false;
          this.startBackToSource("pieces still missing after the origin fetch");
        }
      })
      .catch((err) => {
        const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
        sourceSpan.setError(e).end();
        this.fail(e);
      });
  }

  private announceBackToSource(contentLength: number, pieceLength: number, known: boolean): void {
    this.send({
      case: "backToSourceStarted",
      value: create(schedulerv1.BackToSourceStartedRequestSchema, { contentLength: BigInt(Math.max(0, contentLength)), pieceLength: BigInt(pieceLength), contentLengthKnown: known }),
    });
  }

  private checkStall(): void {
    if (this.ended || this.sourceRunning) return;
    // A reader's patience with a seed's suggestions runs out on the clock,
    // not on an event (piece-selector.ts): look again.
    if (this.o.task.firstWanted() !== undefined) this.pump();
    if (this.inFlight.size > 0) return;
    if (Date.now() - this.lastProgress < this.o.scheduleTimeoutMs) return;
    this.lastProgress = Date.now();
    if (this.session) {
      this.log.info({ parents: this.parents.size }, "no progress: asking the scheduler for other parents");
      this.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: [...this.blocklist], description: "no progress" }) });
    } else {
      this.fallbackToSource("no progress and no scheduler");
    }
  }

  private async complete(): Promise<void> {
    if (this.ended || this.completing) return;
    this.completing = true;
    const t = this.o.task;
    if (this.verifier) {
      // A content-addressed task must be exactly its digest before it is
      // marked done: CRCs only prove the pieces match what the origin (or a
      // parent) sent.
      try {
        await this.verifier.result;
      } catch (err) {
        this.completing = false;
        this.fail(DamselflyError.from(err));
        return;
      }
    }
    let contentDigest: string | undefined;
    if (this.advisory && this.o.download.digest) {
      contentDigest = await this.advisory.result.then(
        () => formatDigest(parseDigest(this.o.download.digest)),
        () => undefined,
      );
    }
    if (this.ended) return;
    this.ended = true;
    // Pieces resumed from an earlier run were not checked by this process.
    await t.markDone(this.resumedPieces === 0, this.verifier ? true : undefined, contentDigest);
    const info = { contentLength: BigInt(t.meta.contentLength), pieceLength: BigInt(t.meta.pieceLength), totalPieces: t.totalPieces };
    if (this.stats.backToSource) this.send({ case: "backToSourceFinished", value: create(schedulerv1.BackToSourceFinishedRequestSchema, info) });
    else this.send({ case: "peerFinished", value: create(schedulerv1.PeerFinishedRequestSchema, info) });
    this.log.info(
      { bytesFromPeers: this.stats.bytesFromPeers, bytesFromSource: this.stats.bytesFromSource, busyAnswers: this.stats.busyAnswers, endgameWins: this.stats.endgameWins, pieceReads: this.stats.pieceReads, parents: this.parents.size + this.blocklist.size, contentLength: t.meta.contentLength },
      "task downloaded",
    );
    this.cleanup();
    this.o.metrics?.downloadSucceeded();
    this.endSpan();
    this.settle.resolve();
  }

  fail(err: DamselflyError): void {
    if (this.ended) return;
    this.ended = true;
    const detail = { error: toErrorDetail(err) };
    if (this.stats.backToSource) this.send({ case: "backToSourceFailed", value: create(schedulerv1.BackToSourceFailedRequestSchema, detail) });
    else this.send({ case: "peerFailed", value: create(schedulerv1.PeerFailedRequestSchema, detail) });
    this.log.warn({ code: err.code, err: err.message }, "task download failed");
    this.o.task.fail(err);
    this.o.metrics?.downloadFailed(err.code);
    this.cleanup();
    this.span.setError(err);
    this.endSpan();
    this.settle.reject(err);
  }

  // Stops everything (daemon shutdown or the last reader went away).
  cancel(reason: DamselflyError): void {
    this.fail(reason);
  }

  private endSpan(): void {
    if (this.span.recording) {
      this.sourceSpan?.end();
      this.span
        .setAttribute("damselfly.content_length", this.o.task.meta.contentLength)
        .setAttribute("damselfly.bytes_from_peers", this.stats.bytesFromPeers)
        .setAttribute("damselfly.bytes_from_origin", this.stats.bytesFromSource)
        .setAttribute("damselfly.back_to_source", this.stats.backToSource)
        .setAttribute("damselfly.scheduler_unavailable", this.stats.schedulerUnavailable)
        .setAttribute("damselfly.parents", this.parents.size + this.blocklist.size)
        .setAttribute("damselfly.busy_answers", this.stats.busyAnswers);
    }
    this.span.end();
  }

  private cleanup(): void {
    this.verifier?.close();
    this.advisory?.close();
    this.idleWaiter?.();
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.busyRetry) clearTimeout(this.busyRetry);
    this.abort.abort();
    for (const p of this.parents.values()) {
      p.close();
      this.endParentSpan(p);
    }
    this.parents.clear();
    this.session?.close();
    this.session = undefined;
  }
}
