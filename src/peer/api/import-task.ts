import { create } from "@bufbuild/protobuf";
import { createHash, type Hash } from "node:crypto";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { crc32Update, pieceLengthFor, pieceRange } from "../../common/pieces.js";
import { CACHE_URL, cacheDigest, cacheDownload, cacheTaskId, daemonv1, fromConnectError, schedulerv1 } from "../../protocol/index.js";
import { cachedTask, peerIdOf } from "../download/peer-id.js";
import { TaskTrust } from "../download/task-trust.js";
import type { DownloadManager } from "../download-manager.js";
import type { LocalTask } from "../storage/local-task.js";

// Bounds of `cache import` (docs/operations/cache.md).
export const MAX_REPLICAS = 16;
const MAX_TTL_MS = 366 * 24 * 3_600_000;
const DEFAULT_REPLICA_TIMEOUT_MS = 10 * 60_000;
const MAX_REPLICA_TIMEOUT_MS = 24 * 3_600_000;
const GRANT_TIMEOUT_MS = 10_000;

const invalid = (m: string) => new DamselflyError("DF_ERR_INVALID_REQUEST", m);

export function checkTaskTtl(ms: bigint): number {
  if (ms > BigInt(MAX_TTL_MS)) throw invalid(`task TTL ${ms} ms is above the bound (${MAX_TTL_MS} ms)`);
  return Number(ms);
}

// Imports running now, per daemon: one writer per task.
const running = new WeakMap<DownloadManager, Set<string>>();

export interface ImportDeps {
  tasks: DownloadManager;
  logger: Logger;
}

type Header = daemonv1.ImportTaskHeader;

// ImportTask: the client streams the header, then the bytes in order. They
// go to the task's data file as they arrive (one message in memory at a
// time: the next is read once the last is written), each piece's CRC and the
// whole sha256 computed on the way. The task is committed only when the
// length and the digest are what the header declared; otherwise it is
// removed. Then it is announced like a finished download, and the scheduler
// asked for replicas.
export async function importTask(deps: ImportDeps, reqs: AsyncIterable<daemonv1.ImportTaskRequest>): Promise<daemonv1.ImportTaskResponse> {
  const it = reqs[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.part.case !== "header") throw invalid("the first message of an import must be its header");
  const h = first.value.part.value;
  const digest = cacheDigest(h.digest);
  const { storage, maxContentLength } = deps.tasks.importDeps;
  if (h.contentLength > BigInt(maxContentLength))
    throw new DamselflyError("DF_ERR_BODY_TOO_LARGE", `${h.contentLength} bytes is above this daemon's bound (${maxContentLength})`);
  if (h.replicas > MAX_REPLICAS) throw invalid(`replicas ${h.replicas} is above the bound (${MAX_REPLICAS})`);
  const ttlMs = checkTaskTtl(h.taskTtlMs);
  const id = cacheTaskId(digest);
  let importing = running.get(deps.tasks);
  if (!importing) running.set(deps.tasks, (importing = new Set()));
  if (importing.has(id) || deps.tasks.isRunning(id))
    throw new DamselflyError("DF_ERR_TASK_IN_USE", `task ${id} is being imported or downloaded here; retry later`);
  importing.add(id);
  let already = false;
  try {
    const existing = storage.get(id);
    already = existing?.done === true;
    if (already) await drain(it, Number(h.contentLength));
    else {
      if (existing) await storage.remove(id);
      await store(deps, id, h, digest, it);
    }
    const task = storage.get(id);
    if (!task?.done) throw new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${id} was removed while it was imported`);
    if (ttlMs > 0) await task.setTtl(ttlMs);
  } finally {
    importing.delete(id);
  }
  const replicas = await replicate(deps, id, digest, h);
  return create(daemonv1.ImportTaskResponseSchema, { taskId: id, alreadyStored: already, replicasWanted: h.replicas, ...replicas });
}

// The daemon holds the content already: the bytes are read and dropped
// (bounded by the declared length).
async function drain(it: AsyncIterator<daemonv1.ImportTaskRequest>, length: number): Promise<void> {
  let n = 0;
  for (let r = await it.next(); !r.done; r = await it.next()) {
    if (r.value.part.case !== "data") throw invalid("only data may follow the header");
    n += r.value.part.value.length;
    if (n > length) throw invalid(`more bytes than the declared ${length}`);
  }
}

async function store(deps: ImportDeps, id: string, h: Header, digest: string, it: AsyncIterator<daemonv1.ImportTaskRequest>): Promise<void> {
  const { storage, makeRoom } = deps.tasks.importDeps;
  const length = Number(h.contentLength);
  const task = await storage.getOrCreate(id, { url: CACHE_URL, tag: "", application: "", filteredQueryParams: [], pieceLength: 0, digestTaskId: digest });
  task.retain();
  try {
    await task.setInfo(length, pieceLengthFor(length), makeRoom);
    const hash = createHash("sha256");
    const w = new PieceWriter(task, await signer(deps, task, digest));
    for (let r = await it.next(); !r.done; r = await it.next()) {
      if (r.value.part.case !== "data") throw invalid("only data may follow the header");
      const chunk = r.value.part.value;
      if (w.offset + chunk.length > length) throw invalid(`more bytes than the declared ${length}`);
      hash.update(chunk);
      await w.write(chunk);
    }
    if (w.offset !== length) throw invalid(`the import ended after ${w.offset} of the declared ${length} bytes`);
    const got = `sha256:${hash.digest("hex")}`;
    if (got !== digest) throw new DamselflyError("DF_ERR_DIGEST_MISMATCH", `digest mismatch: declared ${digest}, the bytes are ${got}`);
    // Every piece was checked on receipt here, and the whole against the ID.
    await task.markDone(true, true);
    deps.logger.info({ taskId: id, contentLength: length }, "task imported");
  } catch (err) {
    await storage.remove(id).catch(() => undefined);
    throw err;
  } finally {
    task.release();
  }
}

// Writes the bytes at their offsets and records each piece (its CRC) once
// its last byte is written.
// With TLS each piece's SHA-256 is signed under the import's grant.
class PieceWriter {
  offset = 0;
  private piece = 0;
  private crc = 0;
  private sha: Hash | undefined;

  constructor(
    private readonly task: LocalTask,
    private readonly trust: TaskTrust | undefined,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      const { offset, length } = pieceRange(this.piece, this.task.meta.contentLength, this.task.meta.pieceLength);
      const take = Math.min(rest.length, offset + length - this.offset);
      const part = rest.subarray(0, take);
      await this.task.writev(this.offset, [part]);
      this.crc = crc32Update(part, this.crc);
      if (this.trust) (this.sha ??= createHash("sha256")).update(part);
      this.offset += take;
      rest = rest.subarray(take);
      if (this.offset === offset + length) {
        const sha = this.sha?.digest("hex");
        const trust = sha === undefined ? undefined : this.trust?.signPiece(this.piece, length, sha);
        await this.task.markPiece({ number: this.piece, crc: this.crc, length, ...(trust ? { trust } : {}) });
        this.piece++;
        this.crc = 0;
        this.sha = undefined;
      }
    }
  }
}

// With TLS: the scheduler's grant for this import, under which the task's
// geometry (now) and pieces (as they are stored) are signed; without one
// the task is stored but never handed on (as an unsigned download's).
async function signer(deps: ImportDeps, task: LocalTask, digest: string): Promise<TaskTrust | undefined> {
  const { tls, scheduler, hostId, maxContentLength } = deps.tasks.importDeps;
  if (!tls) return undefined;
  const trust = new TaskTrust(tls, task, maxContentLength, deps.logger);
  try {
    const peerId = peerIdOf(hostId, task.id);
    if (!scheduler) throw new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", "no scheduler configured");
    const res = await scheduler.ask(task.id, (c, host) => c.grantImport({ hostId: host, taskId: task.id, peerId, digest }, { timeoutMs: GRANT_TIMEOUT_MS }));
    await trust.granted(res.grant);
  } catch (err) {
    deps.logger.warn({ taskId: task.id, err: fromConnectError(err).message }, "no grant for the import: it will not be handed on to other peers");
  }
  return trust.signing ? trust : undefined;
}

// Announces the task (as a finished download would) and asks the
// scheduler for replicas; a shortfall is a warning, not a failure: the
// content is stored here either way.
async function replicate(deps: ImportDeps, id: string, digest: string, h: Header): Promise<{ replicaHosts: string[]; warning: string }> {
  const { scheduler, hostId, storage } = deps.tasks.importDeps;
  const task = storage.get(id);
  const shareable = task !== undefined && deps.tasks.announceable(task);
  if (shareable) scheduler?.announceCached(cachedTask(hostId, task));
  if (!scheduler) return { replicaHosts: [], warning: h.replicas > 0 ? "no scheduler configured: no replica placed" : "" };
  if (!shareable) return { replicaHosts: [], warning: "no grant from the scheduler to sign the task: it is stored here only, never handed on" };
  if (h.replicas === 0) return { replicaHosts: [], warning: "" };
  const timeoutMs = h.replicaTimeoutMs > 0n ? Math.min(Number(h.replicaTimeoutMs), MAX_REPLICA_TIMEOUT_MS) : DEFAULT_REPLICA_TIMEOUT_MS;
  try {
    const res = await scheduler.ask(id, (c, host) =>
      c.replicateTask(
        create(schedulerv1.ReplicateTaskRequestSchema, {
          hostId: host,
          download: cacheDownload(digest),
          replicas: h.replicas,
          timeoutMs: BigInt(timeoutMs),
          taskTtlMs: h.taskTtlMs,
        }),
        { timeoutMs: timeoutMs + 10_000 },
      ),
    );
    const ok = res.results.filter((r) => r.success);
    const failed = res.results.filter((r) => !r.success);
    const why: string[] = [];
    if (res.candidates < h.replicas) why.push(`only ${res.candidates} other host(s) can hold a replica`);
    for (const f of failed) why.push(`${f.hostname}: ${f.description}`);
    const warning = ok.length < h.replicas ? `${ok.length} of ${h.replicas} replica(s) placed (${why.join("; ")})` : "";
    return { replicaHosts: ok.map((r) => r.hostname || r.hostId), warning };
  } catch (err) {
    const e = fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE");
    return { replicaHosts: [], warning: `no replica placed: ${e.code}: ${e.message}` };
  }
}
