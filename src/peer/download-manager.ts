import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../common/errors.js";
import { filterUrl } from "../common/task-id.js";
import { redactUrl, withoutRedacted } from "../common/url-redact.js";
import type { Logger } from "../common/logger.js";
import type { ParentLike } from "../common/trace.js";
import { CACHE_URL, DownloadSchema, downloadTaskId, isCacheUrl, type Download } from "../protocol/index.js";
import type { Storage } from "./storage/storage.js";
import type { LocalTask, MakeRoom } from "./storage/local-task.js";
import type { Source } from "./source/source.js";
import type { SchedulerLink } from "./download/scheduler-link.js";
import { PeerTask } from "./download/peer-task.js";
import { cachedTask, peerIdOf } from "./download/peer-id.js";
import type { DaemonMetrics } from "./metrics.js";
import type { RateLimits, RequestLimits, TaskLimits } from "./rate-limits.js";
import type { TlsIdentity } from "../common/tls/identity.js";

// The download settings a task download runs with (the daemon's config
// provides them).
export interface DownloadTuning {
  piecesInFlight: number;
  piecesPerParent: number;
  // Milliseconds.
  pieceTimeout: number;
  scheduleTimeout: number;
  // Largest content length a task may have (bytes).
  maxContentLength: number;
}

export interface TaskHandle {
  task: LocalTask;
  // The running download, or undefined when the task was already complete.
  run: PeerTask | undefined;
}

// Joins concurrent requests for the same task into one download, and starts a
// new one when a task is incomplete (first request, resume after a restart,
// or a stored piece that failed its check).
export class DownloadManager {
  private readonly running = new Map<string, PeerTask>();
  private readonly limits = new Map<string, TaskLimits>();

  constructor(
    private readonly deps: {
      config: DownloadTuning;
      hostId: string;
      storage: Storage;
      source: Source;
      // None without schedulers (every download goes to the origin).
      scheduler: SchedulerLink | undefined;
      // Asked before a task's data file grows (the disk GC).
      makeRoom?: MakeRoom;
      logger: Logger;
      metrics?: DaemonMetrics;
      rateLimits: RateLimits;
      // Mutual TLS to parents, pieces checked against signed digests.
      tls?: TlsIdentity | undefined;
    },
  ) {
    // A piece found corrupt while uploading is fetched again.
    deps.storage.on("corrupt", (t) => this.repair(t));
  }

  taskIdOf(d: Download): string {
    return downloadTaskId(d);
  }

  peerIdOf(taskId: string): string {
    return peerIdOf(this.deps.hostId, taskId);
  }

  // `req` is what this request asks of the download (rate limit, priority);
  // a request joining a running download adjusts it (see TaskLimits.join).
  // `req.trace`: the request that may start the download; the download's
  // spans join its trace (a request that joins a running download does not).
  // With `req.hold`, the task is retained (LocalTask.retain) before this
  // returns, so the disk GC cannot evict it between lookup and use: the
  // caller releases it when done.
  async ensure(
    download: Download,
    id = this.taskIdOf(download),
    req: RequestLimits & { trace?: ParentLike | undefined; hold?: boolean } = {},
  ): Promise<TaskHandle> {
    const origin = {
      // Stored and listed: secrets redacted (repair() asks without them).
      url: isCacheUrl(download.url) ? CACHE_URL : redactUrl(filterUrl(download.url, download.filteredQueryParams)),
      tag: download.tag,
      application: download.application,
      filteredQueryParams: [...download.filteredQueryParams],
      pieceLength: Number(download.pieceLength),
      digestTaskId: download.digestTaskId ? download.digest : "",
    };
    let task = await this.deps.storage.getOrCreate(id, origin);
    // Evicted while we looked it up: the store makes a fresh one.
    for (let i = 0; task.removed && i < 3; i++) task = await this.deps.storage.getOrCreate(id, origin);
    if (task.removed) throw new DamselflyError("DF_ERR_STORAGE_IO", `task ${id} was removed while it was opened`);
    task.touch();
    if (req.hold) task.retain();
    if (task.done) return { task, run: undefined };
    const existing = this.running.get(id);
    if (existing) {
      this.limits.get(id)?.join(req);
      return { task, run: existing };
    }
    const c = this.deps.config;
    const limits = this.deps.rateLimits.forTask(req);
    const run = new PeerTask({
      task,
      download,
      peerId: this.peerIdOf(id),
      hostId: this.deps.hostId,
      scheduler: this.deps.scheduler,
      makeRoom: this.deps.makeRoom,
      source: this.deps.source,
      logger: this.deps.logger,
      piecesInFlight: c.piecesInFlight,
      piecesPerParent: c.piecesPerParent,
      pieceTimeoutMs: c.pieceTimeout,
      scheduleTimeoutMs: c.scheduleTimeout,
      maxContentLength: c.maxContentLength,
      tls: this.deps.tls,
      metrics: this.deps.metrics,
      ...(req.trace ? { trace: req.trace } : {}),
      limits,
    });
    this.running.set(id, run);
    this.limits.set(id, limits);
    this.follow(run, limits);
    return { task, run };
  }

  // Runs a download to its end; the task is held meanwhile (the disk GC
  // never evicts it mid-download). What the end means for the task: a
  // finished one is announced, one that filled the disk or proved wrong is
  // removed.
  private follow(run: PeerTask, limits: TaskLimits): void {
    const task = run.task;
    const id = task.id;
    task.retain();
    let held = true;
    const releaseRun = (): void => {
      if (held) task.release();
      held = false;
    };
    run
      .run()
      .then(
        // Each scheduler hears of the finished peer once: the download's own
        // stream told one of them. With TLS only a task every piece of which
        // has a signed digest (fetched with a grant, or from such peers).
        () => {
          if (this.announceable(task)) this.deps.scheduler?.announceCached(cachedTask(this.deps.hostId, task), run.finishReportedTo);
        },
        async (err: DamselflyError) => {
          // A task that filled the disk cannot finish and would keep the
          // daemon from storing anything else: give its space back.
          if (err.code === "DF_ERR_STORAGE_FULL" && this.running.get(id) === run) {
            this.running.delete(id);
            releaseRun();
            await this.forget(task);
            this.deps.logger.warn({ taskId: id }, "disk full: removed the unfinished task");
          }
          // Content that is not what its digest says is never kept or served.
          if (err.code === "DF_ERR_DIGEST_MISMATCH" && this.running.get(id) === run) {
            this.running.delete(id);
            releaseRun();
            await this.forget(task);
            this.deps.logger.error({ taskId: id, err: err.message }, "content does not match its digest: removed the task");
          }
        },
      )
      .catch(() => undefined)
      .finally(() => {
        limits.close();
        if (this.limits.get(id) === limits) this.limits.delete(id);
        if (this.running.get(id) === run) this.running.delete(id);
        releaseRun();
      });
  }

  // Fetches a stored task's missing pieces again (a piece failed its check).
  // The original request's headers are not stored, so an origin that needs
  // credentials is reached only through peers that still hold the piece.
  repair(t: LocalTask): void {
    if (t.done || this.running.has(t.id)) return;
    const m = t.meta;
    const download = create(DownloadSchema, {
      url: withoutRedacted(m.url),
      tag: m.tag,
      application: m.application,
      filteredQueryParams: m.filteredQueryParams,
      pieceLength: BigInt(m.pieceLength),
      digest: m.digestTaskId ?? "",
      digestTaskId: !!m.digestTaskId,
    });
    this.deps.logger.info({ taskId: t.id, missing: t.totalPieces - t.pieces.size }, "repairing task");
    this.ensure(download, t.id, { background: true }).catch((err) => this.deps.logger.warn({ taskId: t.id, err: (err as Error).message }, "repair failed"));
  }

  // True when the task is stored complete or downloading right now: a range
  // of it can be served without fetching anything else.
  isActive(id: string): boolean {
    return this.running.has(id) || this.deps.storage.get(id)?.done === true;
  }

  // Drops a task whose content proved wrong (whole-object digest mismatch):
  // the next request fetches it afresh instead of serving the bad copy again.
  async discard(id: string, reason: DamselflyError): Promise<number> {
    const run = this.running.get(id);
    this.running.delete(id);
    run?.cancel(reason);
    const task = this.deps.storage.get(id);
    return task ? (await this.deps.storage.evict([task], (gone) => this.leave(gone))).freed : 0;
  }

  // `cache rm`.
  removeIdle(tasks: LocalTask[]): Promise<{ removed: LocalTask[]; freed: number }> {
    return removeIdle(this.deps.storage, this.deps.scheduler, tasks);
  }

  // A finished task other peers may be sent here for.
  announceable(task: LocalTask): boolean {
    return task.done && (!this.deps.tls || task.trusted);
  }

  // What `cache import` needs to store and announce a task itself.
  get importDeps(): {
    storage: Storage;
    scheduler: SchedulerLink | undefined;
    hostId: string;
    makeRoom: MakeRoom | undefined;
    maxContentLength: number;
    tls: TlsIdentity | undefined;
  } {
    const d = this.deps;
    return { storage: d.storage, scheduler: d.scheduler, hostId: d.hostId, makeRoom: d.makeRoom, maxContentLength: d.config.maxContentLength, tls: d.tls };
  }

  isRunning(id: string): boolean {
    return this.running.has(id);
  }

  private async forget(task: LocalTask): Promise<void> {
    await this.deps.storage.evict([task], (gone) => this.leave(gone));
  }

  // Tells the schedulers this host no longer serves the tasks, so no child
  // is sent here for them.
  private async leave(tasks: LocalTask[]): Promise<void> {
    await this.deps.scheduler?.leaveTasks(tasks.map((t) => t.id));
  }

  async close(): Promise<void> {
    for (const run of this.running.values()) run.cancel(new DamselflyError("DF_ERR_CANCELLED", "daemon shutting down"));
    this.running.clear();
  }
}

// Removes tasks that nothing holds right now (the disk GC, `cache rm`); the
// schedulers hear of it before the files go.
export function removeIdle(storage: Storage, scheduler: SchedulerLink | undefined, tasks: LocalTask[]): Promise<{ removed: LocalTask[]; freed: number }> {
  return storage.evict(tasks, async (gone) => scheduler?.leaveTasks(gone.map((t) => t.id)), true);
}
