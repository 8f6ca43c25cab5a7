import { chmod, mkdir, readdir, readFile, rmdir, stat, unlink } from "node:fs/promises";
import { STORE_DIR_MODE } from "./modes.js";
import { EventEmitter } from "node:events";
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
// The files a task directory may hold that are ours (task.json, its
// temporary while saved, the piece log, the trust bundles and their
// temporary, the data file and its copy while it is given a new inode). Anything else in there is someone else's: never
// counted, never deleted.
const OWN_FILE = /^(?:data|task\.json|pieces\.log|bundles\.json|(?:task|bundles)\.json\.\d+\.tmp|data\.\d+\.unshare)$/;

export interface StorageEvents {
  // A reader found a stored piece of the task corrupt and dropped it (the
  // download manager fetches it again).
  corrupt: [task: LocalTask];
}

export class Storage extends EventEmitter<StorageEvents> {
  private readonly tasks = new Map<string, LocalTask>();
  // Tasks with an open data file, least recently used first.
  private readonly openFiles = new Map<string, LocalTask>();
  // Tasks being deleted: a new task of the same ID waits until the old
  // files are gone (the directory is the same).
  private readonly removing = new Map<string, Promise<unknown>>();
  // Allocated bytes of finished tasks (they no longer change).
  private readonly doneBytes = new Map<string, number>();
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

  constructor(
    readonly dataDir: string,
    private readonly logger: Logger,
  ) {
    super();
  }

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
    await mkdir(this.tasksDir, { recursive: true, mode: STORE_DIR_MODE });
    // A store from before it was private becomes private as a whole.
    await chmod(this.tasksDir, STORE_DIR_MODE).catch((e: Error) => this.logger.warn({ dir: this.tasksDir, err: e.message }, "cannot make the store private"));
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
          await task.bundles.load();
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

  async getOrCreate(
    id: string,
    origin: Pick<TaskMeta, "url" | "tag" | "application" | "filteredQueryParams" | "pieceLength" | "digestTaskId">,
  ): Promise<LocalTask> {
    const existing = this.tasks.get(id);
    if (existing) return existing;
    for (let pending = this.removing.get(id); pending; pending = this.removing.get(id)) await pending.catch(() => undefined);
    const again = this.tasks.get(id);
    if (again) return again;
    const dir = this.taskDir(id);
    await mkdir(dir, { recursive: true, mode: STORE_DIR_MODE });
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
    if (task) await this.evict([task]);
  }

  // Forgets the tasks at once (nobody can find them from here on), runs
  // `beforeDelete` (tell the schedulers), then deletes their files. With
  // onlyIdle, tasks someone holds right now are left alone: the check and the
  // removal from the table happen in one go, so no new holder slips between.
  async evict(
    tasks: readonly LocalTask[],
    beforeDelete?: (tasks: LocalTask[]) => Promise<void>,
    onlyIdle = false,
  ): Promise<{ removed: LocalTask[]; freed: number }> {
    const gone = tasks.filter((t) => this.tasks.get(t.id) === t && (!onlyIdle || t.inUse === 0));
    for (const t of gone) {
      this.tasks.delete(t.id);
      this.openFiles.delete(t.id);
      t.removed = true;
    }
    if (gone.length === 0) return { removed: [], freed: 0 };
    const work = (async () => {
      await beforeDelete?.(gone).catch((err: unknown) =>
        this.logger.warn({ err: (err as Error).message }, "telling the schedulers about removed tasks failed"),
      );
      let freed = 0;
      for (const t of gone) freed += await this.deleteFiles(t);
      return freed;
    })();
    for (const t of gone) this.removing.set(t.id, work);
    try {
      return { removed: gone, freed: await work };
    } finally {
      for (const t of gone) if (this.removing.get(t.id) === work) this.removing.delete(t.id);
    }
  }

  private async deleteFiles(t: LocalTask): Promise<number> {
    await t.close();
    this.doneBytes.delete(t.id);
    let freed = 0;
    for (const name of await readdir(t.dir).catch(() => [] as string[])) {
      if (!OWN_FILE.test(name)) continue;
      const path = join(t.dir, name);
      const st = await stat(path).catch(() => undefined);
      await unlink(path).then(
        () => (freed += st ? allocated(st) : 0),
        (err: NodeJS.ErrnoException) => {
          if (err.code !== "ENOENT") this.logger.warn({ taskId: t.id, file: name, err: err.message }, "cannot delete task file");
        },
      );
    }
    // Left in place if someone else put files in it.
    await rmdir(t.dir).catch(() => undefined);
    return freed;
  }

  // Space the task's own files take on disk (allocated blocks: a sparse data
  // file of a task still downloading counts only what was written).
  async diskBytes(t: LocalTask): Promise<number> {
    const cached = t.done ? this.doneBytes.get(t.id) : undefined;
    if (cached !== undefined) return cached;
    if (!t.done) this.doneBytes.delete(t.id);
    let n = 0;
    for (const name of await readdir(t.dir).catch(() => [] as string[])) {
      if (!OWN_FILE.test(name)) continue;
      const st = await stat(join(t.dir, name)).catch(() => undefined);
      if (st?.isFile()) n += allocated(st);
    }
    if (t.done && !t.removed) this.doneBytes.set(t.id, n);
    return n;
  }

  all(): LocalTask[] {
    return [...this.tasks.values()];
  }

  // Touches are kept in memory (an upload touches its task per piece) and
  // written to task.json here, so a restart keeps the LRU order.
  async flushAccessTimes(): Promise<void> {
    for (const t of this.tasks.values()) {
      if (!t.accessDirty) continue;
      await t.saveMeta().catch((err: unknown) => this.logger.warn({ taskId: t.id, err: (err as Error).message }, "cannot save task metadata"));
    }
  }

  finishedTasks(): LocalTask[] {
    return [...this.tasks.values()].filter((t) => t.done);
  }

  async close(): Promise<void> {
    await this.flushAccessTimes();
    await Promise.all([...this.tasks.values()].map((t) => t.close()));
  }
}

function allocated(st: { blocks: number }): number {
  return st.blocks * 512;
}
