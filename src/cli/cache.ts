// `damselfly cache list|rm|prune`: the local daemon's task store, through its
// API, so a task being downloaded, read or uploaded is never pulled from under
// its users (the daemon checks and refuses).
import { DamselflyError } from "../common/errors.js";
import { parseBytes, parseDuration } from "../common/config.js";
import { isTaskId } from "../common/task-id.js";
import type { CacheConfig } from "../common/schemas.js";
import type { daemonv1 } from "../protocol/index.js";
import { formatBytes, formatDuration } from "./format.js";
import { DAEMON_SERVER_ROLES, daemonTarget, unreachableHint } from "./daemon-target.js";

export interface CacheIo {
  stdout: NodeJS.WritableStream;
}

type DaemonClient = {
  listTasks(req: object, opts: object): Promise<daemonv1.ListTasksResponse>;
  deleteTask(req: object, opts: object): Promise<daemonv1.DeleteTaskResponse>;
  pruneTasks(req: object, opts: object): Promise<daemonv1.PruneTasksResponse>;
};

const TIMEOUT_MS = 30_000;

// The same daemon targets as `get` (daemon-target.ts), over gRPC.
// `call(fn, 0)`: no deadline (an import or export of a big file).
export async function client(config: CacheConfig): Promise<{ c: DaemonClient; call: <T>(fn: (opts: object) => Promise<T>, timeoutMs?: number) => Promise<T> }> {
  const [{ createClient }, protocol] = await Promise.all([import("@connectrpc/connect"), import("../protocol/index.js")]);
  const daemon = await daemonTarget(config.daemon, config);
  const daemonUrl = daemon.label;
  const tls = daemon.tls ? { identity: daemon.tls, server: { roles: DAEMON_SERVER_ROLES } } : undefined;
  const c = createClient(protocol.daemonv1.DaemonService, protocol.createRpcTransport(daemon.target, tls)) as unknown as DaemonClient;
  const clusterToken = config.clusterToken;
  // Evicting and listing need the cluster token when the daemon has one.
  const headers = protocol.clusterTokenHeaders(clusterToken);
  const call = async <T>(fn: (opts: object) => Promise<T>, timeoutMs = TIMEOUT_MS): Promise<T> => {
    try {
      return await fn({ headers, ...(timeoutMs > 0 ? { timeoutMs } : {}) });
    } catch (err) {
      const e = protocol.fromConnectError(err, "DF_ERR_DAEMON_UNAVAILABLE");
      if (e.code === "DF_ERR_DAEMON_UNAVAILABLE") {
        const hint = unreachableHint(daemon.target, (e.cause ?? err) as NodeJS.ErrnoException);
        throw new DamselflyError("DF_ERR_DAEMON_UNAVAILABLE", `daemon unreachable at ${daemonUrl}: ${e.message}${hint}`, { cause: err });
      }
      throw e;
    }
  };
  return { c, call };
}

function age(ms: number, now: number): string {
  const d = Math.max(0, now - ms);
  if (d < 1000) return "now";
  if (d < 60_000) return `${Math.floor(d / 1000)}s ago`;
  if (d < 3_600_000) return `${Math.floor(d / 60_000)}m ago`;
  if (d < 86_400_000) return `${Math.floor(d / 3_600_000)}h ago`;
  return `${Math.floor(d / 86_400_000)}d ago`;
}

export async function cacheList(config: CacheConfig, json: boolean, io: CacheIo): Promise<void> {
  const { c, call } = await client(config);
  const res = await call((o) => c.listTasks({}, o));
  if (json) {
    const out = {
      diskBytes: Number(res.diskBytes),
      policy: res.policy
        ? {
            taskTtlMs: Number(res.policy.taskTtlMs),
            highWatermarkBytes: Number(res.policy.highWatermarkBytes),
            lowWatermarkBytes: Number(res.policy.lowWatermarkBytes),
            intervalMs: Number(res.policy.intervalMs),
          }
        : undefined,
      tasks: res.tasks.map((t) => ({
        taskId: t.taskId,
        url: t.url,
        contentLength: t.contentLengthKnown ? Number(t.contentLength) : -1,
        pieceLength: Number(t.pieceLength),
        totalPieces: t.totalPieces,
        finishedPieces: t.finishedPieces,
        state: t.state,
        createdAtMs: Number(t.createdAtMs),
        lastAccessMs: Number(t.lastAccessMs),
        inUse: t.inUse,
        diskBytes: Number(t.diskBytes),
      })),
    };
    io.stdout.write(JSON.stringify(out, null, 2) + "\n");
    return;
  }
  const now = Date.now();
  const rows = [["TASK ID", "STATE", "SIZE", "PIECES", "DISK", "LAST ACCESS", "IN USE", "URL"]];
  for (const t of res.tasks) {
    rows.push([
      t.taskId,
      t.state,
      t.contentLengthKnown ? formatBytes(t.contentLength) : "?",
      `${t.finishedPieces}/${t.contentLengthKnown ? t.totalPieces : "?"}`,
      formatBytes(t.diskBytes),
      age(Number(t.lastAccessMs), now),
      String(t.inUse),
      t.url,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.stdout.write(r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!))).join("  ") + "\n");
  const p = res.policy;
  const mark = (b: bigint | undefined) => (b && b > 0n ? formatBytes(b) : "off");
  io.stdout.write(
    `${res.tasks.length} task(s), ${formatBytes(res.diskBytes)} on disk` +
      (p
        ? `; GC: high watermark ${mark(p.highWatermarkBytes)}, low ${mark(p.lowWatermarkBytes)}, task TTL ${p.taskTtlMs > 0n ? formatDuration(Number(p.taskTtlMs)) : "off"}`
        : "") +
      "\n",
  );
}

export async function cacheRemove(config: CacheConfig, ids: string[], force: boolean, io: CacheIo): Promise<void> {
  for (const id of ids)
    if (!isTaskId(id))
      throw new DamselflyError("DF_ERR_USAGE", `${JSON.stringify(id)} is not a task ID (64 lowercase hex digits, as \`damselfly cache list\` shows)`);
  const { c, call } = await client(config);
  let missing: string | undefined;
  for (const id of ids) {
    const res = await call((o) => c.deleteTask({ taskId: id, refuseInUse: !force }, o));
    if (!res.deleted) {
      missing ??= id;
      continue;
    }
    io.stdout.write(`removed ${id} (${formatBytes(res.freedBytes)} freed)\n`);
  }
  if (missing) throw new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${missing} is not on this daemon`);
}

export interface PruneOptions {
  all?: boolean;
  olderThan?: string;
  to?: string;
}

export async function cachePrune(config: CacheConfig, o: PruneOptions, io: CacheIo): Promise<void> {
  const named = [o.all === true, o.olderThan !== undefined, o.to !== undefined].filter(Boolean).length;
  if (named > 1) throw new DamselflyError("DF_ERR_USAGE", "give at most one of --all, --older-than and --to");
  const req: Record<string, unknown> = {};
  try {
    if (o.all) req.all = true;
    if (o.olderThan !== undefined) {
      const ms = parseDuration(o.olderThan);
      if (ms <= 0) throw new Error("--older-than must be > 0");
      req.olderThanMs = BigInt(ms);
    }
    if (o.to !== undefined) req.toBytes = BigInt(parseBytes(o.to));
  } catch (err) {
    throw new DamselflyError("DF_ERR_USAGE", (err as Error).message);
  }
  const { c, call } = await client(config);
  const res = await call((opts) => c.pruneTasks(req, opts));
  for (const id of res.evictedTaskIds) io.stdout.write(`removed ${id}\n`);
  io.stdout.write(
    `pruned ${res.evictedTaskIds.length} task(s), ${formatBytes(res.freedBytes)} freed; ${res.skippedInUse} kept because in use; ${formatBytes(res.diskBytes)} on disk now\n`,
  );
}
