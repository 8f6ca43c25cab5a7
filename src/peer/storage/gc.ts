import { statfs } from "node:fs/promises";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { watermarkBytes, type Watermark } from "../../common/watermark.js";
import type { LocalTask } from "./local-task.js";
import type { Storage } from "./storage.js";

export interface DiskGcOptions {
  storage: Storage;
  logger: Logger;
  // 0: tasks never expire.
  taskTtlMs: number;
  // 0: no periodic pass.
  intervalMs: number;
  high: Watermark;
  low: Watermark;
  // Removes tasks that are idle at the moment of the call (tells the
  // schedulers first); resolves with the bytes given back.
  remove: (tasks: LocalTask[], reason: string) => Promise<{ removed: LocalTask[]; freed: number }>;
}

export interface PruneRequest {
  all?: boolean;
  olderThanMs?: number;
  toBytes?: number;
}

export interface PruneResult {
  evicted: string[];
  freedBytes: number;
  // Tasks that qualified but were being downloaded, read or uploaded.
  skippedInUse: number;
  // Damselfly's usage after the pass.
  diskBytes: number;
}

export interface GcPolicy {
  taskTtlMs: number;
  intervalMs: number;
  highBytes: number;
  lowBytes: number;
}

// Room kept free beyond a new task's length when making room for it (its
// metadata, the piece log, filesystem overhead).
const ROOM_MARGIN = 1024 * 1024;

// The daemon's disk GC. Counts only Damselfly's own task files (never the
// filesystem's usage, never files it did not write) and evicts least recently
// used tasks (last read, upload or download, persisted in task.json) that
// nothing holds: a task being downloaded, read or uploaded is never touched.
export class DiskGc {
  private timer: NodeJS.Timeout | undefined;
  // One pass at a time: two would pick the same victims and count twice.
  private chain: Promise<unknown> = Promise.resolve();
  private busy = false;
  private readonly log: Logger;

  constructor(private readonly o: DiskGcOptions) {
    this.log = o.logger.child({ component: "disk-gc" });
  }

  start(): void {
    if (this.o.intervalMs <= 0) return;
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.pass("interval").catch((err: unknown) => this.log.warn({ err: (err as Error).message }, "disk gc pass failed"));
    }, this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(async () => {
      this.busy = true;
      try {
        return await fn();
      } finally {
        this.busy = false;
      }
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  async policy(): Promise<GcPolicy> {
    const needFs = "percent" in this.o.high || "percent" in this.o.low;
    const fsBytes = needFs ? await this.fsBytes() : 0;
    const highBytes = watermarkBytes(this.o.high, fsBytes);
    return { taskTtlMs: this.o.taskTtlMs, intervalMs: this.o.intervalMs, highBytes, lowBytes: Math.min(highBytes, watermarkBytes(this.o.low, fsBytes)) };
  }

  private async fsBytes(): Promise<number> {
    const st = await statfs(this.o.storage.dataDir);
    return st.blocks * st.bsize;
  }

  // Every task with its allocated bytes, least recently used first.
  async usage(): Promise<{ tasks: Array<{ task: LocalTask; bytes: number }>; total: number }> {
    const tasks: Array<{ task: LocalTask; bytes: number }> = [];
    let total = 0;
    for (const task of this.o.storage.all()) {
      const bytes = await this.o.storage.diskBytes(task);
      tasks.push({ task, bytes });
      total += bytes;
    }
    tasks.sort((a, b) => a.task.meta.lastAccessAt - b.task.meta.lastAccessAt);
    return { tasks, total };
  }

  // One pass: the configured policy (TTL, then watermarks), or what `prune`
  // asked for. Logs one line when it evicted or had to keep something.
  pass(reason: string, req: PruneRequest = {}): Promise<PruneResult> {
    return this.serial(async () => {
      await this.o.storage.flushAccessTimes();
      const { tasks, total } = await this.usage();
      const now = Date.now();
      const explicit = req.all === true || req.olderThanMs !== undefined || req.toBytes !== undefined;
      const p = explicit ? undefined : await this.policy();
      const victims: LocalTask[] = [];
      let skippedInUse = 0;
      let left = total;
      const take = (t: LocalTask, bytes: number): void => {
        if (t.inUse > 0) {
          skippedInUse++;
          return;
        }
        victims.push(t);
        left -= bytes;
      };
      const ttl = explicit ? req.olderThanMs : p!.taskTtlMs > 0 ? p!.taskTtlMs : undefined;
      const chosen = new Set<LocalTask>();
      for (const { task, bytes } of tasks) {
        // A task's own TTL (`cache import --ttl`) replaces the policy's.
        const own = explicit ? ttl : (task.meta.ttlMs ?? ttl);
        if (req.all === true || (own !== undefined && now - task.meta.lastAccessAt >= own)) {
          chosen.add(task);
          take(task, bytes);
        }
      }
      // Watermarks: once over high, down to low, oldest access first.
      const target = explicit ? req.toBytes : p!.highBytes > 0 && left > p!.highBytes ? p!.lowBytes : undefined;
      if (target !== undefined) {
        for (const { task, bytes } of tasks) {
          if (left <= target) break;
          if (chosen.has(task)) continue;
          take(task, bytes);
        }
      }
      const { removed, freed } = victims.length > 0 ? await this.o.remove(victims, reason) : { removed: [], freed: 0 };
      skippedInUse += victims.length - removed.length;
      const after = total - freed;
      if (removed.length > 0 || skippedInUse > 0 || explicit || reason !== "interval") {
        this.log.info(
          {
            reason,
            tasks: removed.length,
            bytesFreed: freed,
            skippedInUse,
            usageBefore: total,
            usageAfter: after,
            ...(p ? { highWatermark: p.highBytes, lowWatermark: p.lowBytes, taskTtlMs: p.taskTtlMs } : {}),
          },
          "disk gc pass",
        );
      }
      return { evicted: removed.map((t) => t.id), freedBytes: freed, skippedInUse, diskBytes: after };
    });
  }

  // Before a task's data file grows to `bytes`: if the filesystem has not
  // that much free, evict idle least recently used tasks to make room. When
  // even that cannot make room, nothing is evicted and the download fails
  // with DF_ERR_STORAGE_FULL (the cache stays as it was).
  makeRoom(task: LocalTask, bytes: number): Promise<void> {
    return this.serial(async () => {
      const st = await statfs(this.o.storage.dataDir).catch(() => undefined);
      if (!st) return;
      const free = st.bavail * st.bsize;
      const need = bytes + ROOM_MARGIN - (await this.o.storage.diskBytes(task));
      if (free >= need) return;
      const shortfall = need - free;
      const { tasks } = await this.usage();
      const victims: LocalTask[] = [];
      let can = 0;
      for (const { task: t, bytes: b } of tasks) {
        if (can >= shortfall) break;
        if (t === task || t.inUse > 0 || b === 0) continue;
        victims.push(t);
        can += b;
      }
      if (can < shortfall) {
        this.log.warn(
          { taskId: task.id, needBytes: need, freeBytes: free, evictableBytes: can },
          "disk gc: not enough space for the task even after evicting every idle task; keeping the cache",
        );
        // Short of more than the margin: the download would only fill the
        // disk and fail there, its readers cut off midway (a mirror client
        // mid-response). It fails now, before a byte is stored, and readers
        // go to the origin instead.
        if (can < shortfall - ROOM_MARGIN)
          throw new DamselflyError(
            "DF_ERR_STORAGE_FULL",
            `no space left on device: task ${task.id} needs ${need - ROOM_MARGIN} more bytes, ${free} are free and ${can} could be evicted`,
          );
        return;
      }
      const { removed, freed } = await this.o.remove(victims, "make-room");
      this.log.info({ reason: "make-room", forTask: task.id, tasks: removed.length, bytesFreed: freed, needBytes: need, freeBytes: free }, "disk gc pass");
    });
  }
}
