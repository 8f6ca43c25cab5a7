import { DamselflyError } from "../../common/errors.js";
import { MIN_PIECE_LENGTH } from "../../common/pieces.js";
import { keyedByEmptyContent, TaskDigests } from "./task-digests.js";
import type { Logger } from "../../common/logger.js";
import { spanUrl, startSpan, type Span } from "../../common/trace.js";
import { HostType, fromErrorDetail, type schedulerv1 } from "../../protocol/index.js";
import type { LocalTask } from "../storage/local-task.js";
import { TaskAnnouncer } from "./task-announcer.js";
import type { ParentConn } from "./parent-conn.js";
import { PiecePump } from "./piece-pump.js";
import { ParentSet } from "./parent-set.js";
import { PieceFetcher } from "./piece-fetcher.js";
import { BackToSource } from "./back-to-source.js";
import { OriginPhase } from "./origin-phase.js";
import { DownloadState } from "./download-state.js";
import { parentConnOptions, recordTotals, type PeerTaskOptions, type PeerTaskStats } from "./peer-task-options.js";
import { TaskTrust } from "./task-trust.js";
import { GeometryIntake } from "./task-geometry.js";

export type { PeerTaskOptions, PeerTaskStats };

// With fewer parents than this left after dropping one, ask the scheduler for
// more (each ask counts toward its reschedule limit).
const MIN_PARENTS = 2;
// A piece that failed for one of these is the parent's lie, not bad luck.
const LIES = new Set(["DF_ERR_PIECE_CORRUPT", "DF_ERR_TRUST_INVALID", "DF_ERR_GEOMETRY_INVALID"]);

// Conducts one task download on this daemon: talks to the scheduler over one
// announce stream, keeps a set of parents (ParentSet: who holds which
// pieces), pulls pieces from several parents at once (PieceFetcher), and
// goes to the origin (BackToSource) only when the scheduler says so or
// cannot be reached. Its phase (DownloadState) decides what may happen next.
export class PeerTask {
  readonly stats: PeerTaskStats = {
    bytesFromPeers: 0,
    bytesFromSource: 0,
    backToSource: false,
    schedulerUnavailable: false,
    busyAnswers: 0,
    endgameWins: 0,
    pieceReads: 0,
  };
  // The scheduler told of the finish on this download's own stream.
  finishReportedTo: string | undefined;
  private readonly state = new DownloadState();
  private readonly parents: ParentSet;
  private readonly fetcher: PieceFetcher;
  private readonly origin: BackToSource;
  private readonly source: OriginPhase;
  private readonly pieces: PiecePump;
  private readonly announcer: TaskAnnouncer;
  private readonly abort = new AbortController();
  private settle!: { resolve: () => void; reject: (e: DamselflyError) => void };
  private readonly finished: Promise<void>;
  private resumedPieces = 0;
  private digests: TaskDigests | undefined;
  private lastProgress = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  // With TLS: the fetchers this download trusts, or its own grant.
  private readonly trust: TaskTrust | undefined;
  private readonly geometry: GeometryIntake;
  // One span for the download, one per back-to-source run and one per parent
  // (its pieces summed up): never one per piece.
  private readonly span: Span;

  constructor(private readonly o: PeerTaskOptions) {
    this.log = o.logger.child({ taskId: o.task.id, peerId: o.peerId });
    this.finished = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.finished.catch(() => undefined);
    this.span = startSpan("peer download", {
      parent: o.trace,
      attributes: { "damselfly.task_id": o.task.id, "damselfly.peer_id": o.peerId, "damselfly.host_id": o.hostId, "url.full": spanUrl(o.download.url) },
    });
    const trust = (this.trust = o.tls ? new TaskTrust(o.tls, o.task, o.maxContentLength, this.log) : undefined);
    this.geometry = new GeometryIntake({
      task: o.task,
      maxContentLength: o.maxContentLength,
      trust,
      log: this.log,
      ended: () => this.state.ended,
      setInfo: (contentLength, pieceLength) => this.setInfo(contentLength, pieceLength).catch((e) => this.fail(DamselflyError.from(e))),
      distrust: (conn, e) => this.distrust(conn, e),
    });
    this.parents = new ParentSet({
      task: o.task,
      selfId: o.peerId,
      conn: parentConnOptions(o, this.stats, trust),
      span: this.span,
      log: this.log,
      hooks: {
        sizeKnown: (conn, contentLength, pieceLength) => this.geometry.fromParent(conn, contentLength, pieceLength),
        bundle: (conn, record) => this.geometry.bundle(conn, record),
        distrust: (conn, e) => this.distrust(conn, e),
        // An origin failure on the seed is everyone's failure.
        failed: (conn, e) => (e.code === "DF_ERR_SOURCE_STATUS" && conn.addr.isSeed ? this.fail(e) : this.dropParent(conn, e.message)),
        broken: (conn, reason) => this.dropParent(conn, reason, "broken"),
        changed: () => this.pieces.schedule(),
      },
    });
    this.fetcher = new PieceFetcher({
      task: o.task,
      signal: this.abort.signal,
      stats: this.stats,
      ended: () => this.state.ended,
      stored: (n, crc, length, parent, micros) => this.storedFromParent(n, crc, length, parent, micros),
      failed: (n, parent, err) => this.pieceFailed(n, parent, err),
      served: (parent) => {
        const slow = this.parents.tooSlow(parent);
        if (slow) this.dropParent(parent, slow);
      },
      settled: () => this.pieces.schedule(),
    });
    this.pieces = new PiecePump({
      options: o,
      state: this.state,
      parents: this.parents,
      fetcher: this.fetcher,
      complete: () => this.complete().catch((e) => this.fail(DamselflyError.from(e))),
      dropParent: (conn, reason) => this.dropParent(conn, reason),
    });
    this.announcer = new TaskAnnouncer({ scheduler: o.scheduler, taskId: o.task.id, peerId: o.peerId, span: this.span });
    this.origin = new BackToSource({
      ...o,
      log: this.log,
      stats: this.stats,
      signal: this.abort.signal,
      span: this.span,
      announcer: this.announcer,
      progressed: () => (this.lastProgress = Date.now()),
      inFlight: this.fetcher.inFlight,
      feed: (offset, chunk) => this.digests?.feed(offset, chunk),
      trust,
    });
    this.source = new OriginPhase({
      state: this.state,
      origin: this.origin,
      task: o.task,
      parentsHold: (n) => this.parents.holds(n),
      parentsCover: () => this.parents.coverMissing(),
      noneInFlight: () => this.fetcher.noneInFlight(),
      complete: () => this.complete(),
      fail: (e) => this.fail(e),
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
    this.digests = new TaskDigests(this.o.task, this.o.download, this.resumedPieces > 0);
    this.watchdog = setInterval(() => this.checkStall(), 1_000);
    this.watchdog.unref();
    if (this.o.task.isComplete()) {
      await this.complete();
      return;
    }
    // Answers may follow the registration at once: they find us pulling.
    this.state.to("peers");
    if (
      !(await this.announcer.open({
        register: () => TaskAnnouncer.registration(this.o.download, this.o.task.pieces.size),
        onResponse: (r) => this.onResponse(r),
        onAttached: (s) => this.onSchedulerMoved(s),
        onDetached: (e) => this.onSchedulerLost(e),
      }))
    ) {
      if (this.o.download.disableBackToSource) {
        this.fail(new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", "scheduler unreachable and back-to-source is disabled"));
        return;
      }
      this.stats.schedulerUnavailable = true;
      this.log.warn("scheduler unreachable: downloading directly from the origin");
      this.source.start("scheduler unreachable");
      return;
    }
  }

  private onResponse(res: schedulerv1.AnnouncePeerResponse): void {
    if (this.state.ended) return;
    const r = res.response;
    switch (r.case) {
      case "normalTask": {
        const info = r.value.task;
        if (info?.contentLengthKnown && !this.o.task.infoKnown) this.geometry.fromScheduler(Number(info.contentLength), Number(info.pieceLength));
        for (const p of r.value.candidateParents)
          this.parents.add({ peerId: p.peerId, hostId: p.hostId, ip: p.ip, port: p.uploadPort, isSeed: p.hostType === HostType.SEED });
        this.announcer.downloadStarted();
        break;
      }
      case "needBackToSource":
        // With the scheduler's grant this peer signs what it fetches, so
        // others can take it from us.
        if (this.trust && r.value.grant.length > 0) {
          this.trust.granted(r.value.grant).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, "cannot keep the signed geometry"));
        }
        this.source.start(r.value.description || "scheduler asked", false, r.value.keepParents && this.parents.size > 0);
        break;
      case "emptyTask":
        // With TLS nobody but the origin says what the task holds, unless
        // the task is keyed by the empty content's own digest (an empty
        // file imported with `cache import`, which has no origin).
        if (this.trust && !keyedByEmptyContent(this.o.download)) {
          this.fallbackToSource("the scheduler says the task is empty");
          break;
        }
        this.setInfo(0, this.o.download.pieceLength ? Number(this.o.download.pieceLength) : MIN_PIECE_LENGTH)
          .then(() => this.complete())
          .catch((e) => this.fail(DamselflyError.from(e)));
        break;
      case "taskFailed":
        this.onTaskFailed(fromErrorDetail(r.value.error));
        break;
      case "localHit":
        // The scheduler counts our resumed pieces as the whole task; trust our
        // own store when it disagrees.
        if (this.o.task.isComplete()) this.complete().catch((e) => this.fail(DamselflyError.from(e)));
        else this.fallbackToSource("scheduler reported a local hit but pieces are missing");
        break;
    }
  }

  // Another scheduler took the download over and heard our registration
  // (with the pieces we hold, so it offers us as a parent).
  private onSchedulerMoved(scheduler: string): void {
    if (!this.state.ended) this.log.info({ scheduler, pieces: this.o.task.pieces.size }, "download moved to another scheduler");
  }

  private onSchedulerLost(err: DamselflyError): void {
    if (this.state.ended) return;
    this.log.warn({ err: err.message }, "no scheduler holds the download; continuing with current parents");
    if (this.parents.size === 0 && this.state.phase !== "source") this.fallbackToSource("scheduler stream lost and no parent");
  }

  // `report`: the scheduler hears of it (the blocklist) whatever is left;
  // "broken": it hears the connection broke, and checks the parent's host.
  private dropParent(conn: ParentConn, reason: string, report: boolean | "broken" = false): void {
    if (!this.parents.drop(conn, reason) || !this.state.pulling) return;
    if (report === "broken") this.announcer.parentBroken(conn.id, reason);
    if (this.state.phase === "source") return this.source.refill(`a kept parent is gone (${reason})`);
    // Plenty of parents holding what we miss need no new decision.
    if (this.announcer.connected) {
      if (report === true || this.parents.size < MIN_PARENTS || !this.parents.coverMissing()) this.reschedule(reason);
    } else if (this.parents.size === 0) this.fallbackToSource("no parent left and no scheduler");
    this.pieces.run();
  }

  private reschedule(description: string): void {
    this.announcer.reschedule(this.parents.blocklist, description);
  }

  private async setInfo(contentLength: number, pieceLength: number): Promise<void> {
    await this.o.task.setInfo(contentLength, pieceLength, this.o.makeRoom);
    this.pieces.run();
  }

  // A parent that lied (bogus geometry, a record that does not verify,
  // bytes that do not match their signed digest): dropped for this task and
  // reported, its ID on the blocklist sent with a reschedule.
  private distrust(conn: ParentConn, e: DamselflyError): void {
    this.log.warn({ parent: conn.id, code: e.code, err: e.message }, "parent sent what no honest parent would: dropped");
    this.dropParent(conn, `${e.code}: ${e.message}`, true);
  }

  private storedFromParent(n: number, crc: number, length: number, parent: ParentConn, micros: bigint): void {
    this.lastProgress = Date.now();
    this.o.metrics?.piece("peer", length, Number(micros) / 1e6);
    if (this.log.isLevelEnabled("debug"))
      this.log.debug({ piece: n, parent: parent.id, seed: parent.addr.isSeed, ms: Number(micros / 1000n) }, "piece from parent");
    this.announcer.pieceFinished(n, length, crc, micros, parent.id);
  }

  private pieceFailed(n: number, parent: ParentConn, e: DamselflyError): void {
    this.announcer.pieceFailed(n, parent.id, e);
    if (e.code === "DF_ERR_STORAGE_FULL" || e.code === "DF_ERR_STORAGE_IO") {
      this.fail(e);
      return;
    }
    if (LIES.has(e.code)) {
      this.distrust(parent, e);
      return;
    }
    if (!e.temporary) {
      parent.failures++;
      this.log.info({ parent: parent.id, piece: n, err: e.message }, "piece failed; retrying elsewhere");
      if (parent.failures >= 3) this.dropParent(parent, e.message);
    }
  }

  // Another peer's failure to fetch the task (a real 404, or a liar's): like
  // the proxy, ask the origin ourselves, unless back-to-source is disabled.
  private onTaskFailed(reported: DamselflyError): void {
    if (this.o.download.disableBackToSource) return this.fail(reported);
    this.log.info({ code: reported.code, err: reported.message }, "scheduler reported the task failed: fetching from the origin ourselves");
    this.source.start(`scheduler reported the task failed (${reported.code})`);
  }

  private fallbackToSource(reason: string): void {
    if (this.o.download.disableBackToSource) {
      this.fail(new DamselflyError("DF_ERR_NO_PARENT", `no parent can serve task ${this.o.task.id} (${reason}) and back-to-source is disabled`));
      return;
    }
    this.source.start(reason);
  }

  private checkStall(): void {
    if (!this.state.pulling) return;
    // A reader's patience with a seed's suggestions runs out on the clock,
    // not on an event (piece-selector.ts): look again.
    if (this.o.task.firstWanted() !== undefined) this.pieces.run();
    if (this.fetcher.inFlight.size > 0) return;
    if (Date.now() - this.lastProgress < this.o.scheduleTimeoutMs) return;
    this.lastProgress = Date.now();
    if (this.state.phase === "source") return this.source.stalled();
    if (this.announcer.connected) {
      this.log.info({ parents: this.parents.size }, "no progress: asking the scheduler for other parents");
      this.reschedule("no progress");
    } else {
      this.fallbackToSource("no progress and no scheduler");
    }
  }

  private async complete(): Promise<void> {
    if (!this.state.can("verifying")) return;
    this.state.to("verifying");
    let contentDigest: string | undefined;
    try {
      contentDigest = await this.digests?.result();
    } catch (err) {
      this.fail(DamselflyError.from(err));
      return;
    }
    if (this.state.ended) return;
    this.state.to("succeeded");
    const t = this.o.task;
    // Pieces resumed from an earlier run were not checked by this process.
    await t.markDone(this.resumedPieces === 0, this.digests?.checksTask ? true : undefined, contentDigest);
    this.finishReportedTo = this.announcer.scheduler;
    this.announcer.finished(this.stats.backToSource, t.meta.contentLength, t.meta.pieceLength, t.totalPieces);
    this.log.info({ ...this.stats, parents: this.parents.everHad, contentLength: t.meta.contentLength }, "task downloaded");
    this.cleanup();
    this.o.metrics?.downloadSucceeded();
    this.endSpan();
    this.settle.resolve();
  }

  fail(err: DamselflyError): void {
    if (this.state.ended) return;
    this.state.to("failed");
    this.announcer.failed(this.stats.backToSource, err);
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
      this.origin.endSpan();
      recordTotals(this.span, this.stats, this.o.task.meta.contentLength, this.parents.everHad);
    }
    this.span.end();
  }

  private cleanup(): void {
    this.digests?.close();
    this.fetcher.close();
    if (this.watchdog) clearInterval(this.watchdog);
    this.pieces.close();
    this.abort.abort();
    this.parents.closeAll();
    this.announcer.close();
  }
}
