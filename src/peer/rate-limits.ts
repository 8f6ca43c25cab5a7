import type { DaemonClusterKey } from "../common/cluster-config.js";
import { type Clock, realClock, Throttle, TokenBucket } from "../common/token-bucket.js";

// Bytes per second; 0 is unlimited. The keys are the daemon's dynamic
// cluster settings (common/cluster-config.ts).
export type HostRateLimits = { [K in DaemonClusterKey]: number };

// What one request asks of a task's download.
export interface RequestLimits {
  // Bytes per second for this task (0 or absent: the daemon's perTaskRateLimit).
  rateLimit?: number;
  // Preheats, seed triggers and proxy prefetches: they get only the download
  // bandwidth real-time pulls (get, proxied pulls) leave.
  background?: boolean;
}

// The daemon's buckets: one per host-wide limit, one per running task. Every
// rate can be changed while bytes flow (set()).
export class RateLimits {
  readonly download: TokenBucket;
  readonly upload: TokenBucket;
  readonly backToSource: TokenBucket;
  // Uploads are one class: every piece served counts the same.
  readonly uploads: Throttle;
  private perTask = 0;
  private readonly tasks = new Set<TaskLimits>();

  // clock: the real one except in tests (see TokenBucket).
  constructor(
    limits: HostRateLimits,
    readonly clock: Clock = realClock,
  ) {
    this.download = new TokenBucket(0, clock);
    this.upload = new TokenBucket(0, clock);
    this.backToSource = new TokenBucket(0, clock);
    this.uploads = new Throttle([this.upload]);
    this.set(limits);
  }

  get current(): HostRateLimits {
    return {
      totalDownloadRateLimit: this.download.limit,
      totalUploadRateLimit: this.upload.limit,
      backToSourceRateLimit: this.backToSource.limit,
      perTaskRateLimit: this.perTask,
    };
  }

  set(l: HostRateLimits): void {
    this.download.setRate(l.totalDownloadRateLimit);
    this.upload.setRate(l.totalUploadRateLimit);
    this.backToSource.setRate(l.backToSourceRateLimit);
    this.perTask = l.perTaskRateLimit;
    for (const t of this.tasks) t.refresh();
  }

  // Buckets for a new task download, first asked for by `req`.
  forTask(req: RequestLimits): TaskLimits {
    const t = new TaskLimits(this, () => this.perTask, req);
    this.tasks.add(t);
    return t;
  }

  release(t: TaskLimits): void {
    this.tasks.delete(t);
  }
}

// One task's bucket and its two paths: pieces from parents count against the
// task and the host's download limit; bytes from the origin also against the
// back-to-source limit.
export class TaskLimits {
  readonly bucket: TokenBucket;
  readonly fromParents: Throttle;
  readonly fromSource: Throttle;
  // The task runs as fast as the most generous of the requests that joined
  // it asks (one download serves them all). Infinity: unlimited.
  private override = 0;
  private usesDefault = false;

  constructor(
    private readonly host: RateLimits,
    private readonly perTask: () => number,
    req: RequestLimits,
  ) {
    this.bucket = new TokenBucket(0, host.clock);
    this.fromParents = new Throttle([this.bucket, host.download], req.background === true);
    this.fromSource = new Throttle([this.bucket, host.backToSource, host.download], req.background === true);
    this.join(req);
  }

  get background(): boolean {
    return this.fromParents.background;
  }

  // The tightest limit this task's downloads are under (bytes per second,
  // 0: none).
  get rate(): number {
    const task = this.bucket.limit;
    const host = this.host.download.limit;
    return task === 0 ? host : host === 0 ? task : Math.min(task, host);
  }

  // Another request for the same task: a real-time one makes the whole task
  // real-time.
  join(req: RequestLimits): void {
    if (!req.background) this.fromParents.background = this.fromSource.background = false;
    if (req.rateLimit && req.rateLimit > 0) this.override = Math.max(this.override, req.rateLimit);
    else this.usesDefault = true;
    this.refresh();
  }

  refresh(): void {
    const def = this.perTask() || Infinity;
    const rate = Math.max(this.override, this.usesDefault ? def : 0);
    this.bucket.setRate(rate === Infinity ? 0 : rate);
  }

  close(): void {
    this.host.release(this);
  }
}
