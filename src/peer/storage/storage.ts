import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { DamselflyError } from "../../common/errors.js";
import { isTaskId } from "../../common/task-id.js";
import type { Logger } from "../../common/logger.js";
import { LocalTask, type TaskMeta } from "./local-task.js";

// The task store under --data-dir: tasks/{id[0:3]}/{id}/. Paths are built only
// from validated task IDs (64 hex digits), so no request can name a file
// outside the store.
// Tasks whose files (data, piece log) stay open at once; beyond this the least
// recently used idle ones are closed (thousands of cached layers must not
// exhaust descriptors).
const MAX_OPEN_FILES = 128;

export class Storage {
  private readonly tasks = new Map<string, LocalTask>();
  // Tasks with an open data file, least recently used first.
  private readonly openFiles = new Map<string, LocalTask>();
  private readonly onOpenUse = (t: LocalTask): void => {
    this.openFiles.delete(t.id);
    this.openFiles.set(t.id, t);
    if (this.openFiles.size <= MAX_OPEN_FILES) return;
    for (const [id, old] of this.openFiles) {
      if (this.openFiles.size <= MAX_OPEN_FILES) break;
      if (old === t) continue;
      void old.closeIfIdle();
      if (!old.hasOpenHandle) this.openFiles.delete(id);
    }
  };

  constructor(readonly dataDir: string, private readonly logger: Logger) {}

  get tasksDir(): string {
    return join(this.dataDir, "tasks");
  }

  private taskDir(id: string): string {
    if (!isTaskId(id)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `invalid task id ${JSON.stringify(id)}`);
    return join(this.tasksDir, id.slice(0, 3), id);
  }

  // Loads every task left by a previous run: finished ones are served again,
  // partial ones resume from their piece log.
  async load(): Promise<void> {
    await mkdir(this.tasksDir, { recursive: true });
    for (const prefix of await readdir(this.tasksDir)) {
      if (!/^[0-9a-f]{3}$/.test(prefix)) continue;
      for (const id of await readdir(join(this.tasksDir, prefix)).catch(() => [] as string[])) {
        if (!isTaskId(id) || !id.startsWith(prefix)) continue;
        const dir = join(this.tasksDir, prefix, id);
        try {
          const meta = JSON.parse(await readFile(join(dir, "task.json"), "utf8")) as TaskMeta;
          if (meta.id !== id) throw new Error("id mismatch");
          const task = new LocalTask(dir, meta);
          task.onOpenUse = this.onOpenUse;
          const log = await readFile(join(dir, "pieces.log"), "utf8").catch(() => "");
          for (const [n, p] of LocalTask.parseLog(log)) task.pieces.set(n, p);
          if (task.meta.done && !task.isComplete()) task.meta = { ...task.meta, done: false };
          this.tasks.set(id, task);
        } catch (e) {
          this.logger.warn({ taskId: id, err: (e as Error).message }, "skipping unreadable task metadata");
        }
      }
    }
    const done = [...this.tasks.values()].filter((t) => t.done).length;
    this.logger.info({ tasks: this.tasks.size, done, dataDir: this.dataDir }, "storage loaded");
  }

  get(id: string): LocalTask | undefined {
    return this.tasks.get(id);
  }

  async getOrCreate(id: string, origin: Pick<TaskMeta, "url" | "tag" | "application" | "filteredQueryParams" | "pieceLength" | "digestTaskId">): Promise<LocalTask> {
    const existing = this.tasks.get(id);
    if (existing) return existing;
    const dir = this.taskDir(id);
    await mkdir(dir, { recursive: true });
    const now = Date.now();
    const task = new LocalTask(dir, { id, ...origin, contentLength: -1, done: false, createdAt: now, lastAccessAt: now });
    task.onOpenUse = this.onOpenUse;
    // A concurrent caller may have created it while we awaited.
    const raced = this.tasks.get(id);
    if (raced) return raced;
    this.tasks.set(id, task);
    await task.saveMeta();
    return task;
  }

  // Forgets a task and deletes its files.
  async remove(id: string): Promise<void> {
    const task = this.tasks.get(id);
    if (!task) return;
    this.tasks.delete(id);
    this.openFiles.delete(id);
    await task.close();
    await rm(task.dir, { recursive: true, force: true });
  }

  finishedTasks(): LocalTask[] {
    return [...this.tasks.values()].filter((t) => t.done);
  }

  async close(): Promise<void> {
    await Promise.all([...this.tasks.values()].map((t) => t.close()));
  }
}
