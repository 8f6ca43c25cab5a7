import type { ServiceImpl, HandlerContext } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import { isTaskId } from "../../common/task-id.js";
import type { Logger } from "../../common/logger.js";
import { SpanKind, startSpan, traceOfHeaders } from "../../common/trace.js";
import { checkClusterToken, daemonv1, toConnectError } from "../../protocol/index.js";
import { requireRole } from "../../protocol/caller.js";
import type { Role } from "../../common/tls/roles.js";
import type { BlobAccess } from "../proxy/blob-access.js";
import type { DownloadManager } from "../download-manager.js";
import type { Storage } from "../storage/storage.js";
import type { DiskGc } from "../storage/gc.js";
import { cacheHandlers } from "./cache-service.js";
import { statCacheTask } from "./cache-stat.js";
import { importTask } from "./import-task.js";
import { downloadTask, validateDownload, type DownloadTaskDeps } from "./download-task.js";
import type { DaemonMetrics } from "../metrics.js";
import type { S3Signing } from "../source/s3-origin.js";

export interface DaemonServiceDeps {
  tasks: DownloadManager;
  storage: Storage;
  logger: Logger;
  clusterToken?: string | undefined;
  gc: DiskGc;
  metrics?: DaemonMetrics;
  shuttingDown?: () => boolean;
  // The registry check of a digest-keyed read (download-access.ts).
  access?: BlobAccess;
  s3?: S3Signing;
  // This daemon's hub endpoint for clients that name none (source.hf).
  hfEndpoint?: string;
}

// Who may call what over a network API with TLS (on the Unix socket, any
// local caller; without TLS, the loopback API is open as before): only a
// scheduler makes this daemon fetch on its own account, only a client
// certificate downloads through it, and a scheduler preheats through it
// (docs/operations/security.md).
const ROLES: Record<string, readonly Role[]> = {
  DownloadTask: ["client", "scheduler"],
  TriggerTask: ["scheduler"],
  DeleteTask: ["scheduler", "client"],
  StatTask: ["client", "scheduler"],
  ListTasks: ["client"],
  PruneTasks: ["client"],
  SourceDefaults: ["client"],
  ImportTask: ["client"],
  StatCacheTask: ["client"],
};

function gate(ctx: HandlerContext, method: keyof typeof ROLES): void {
  try {
    requireRole(ctx, ROLES[method]!, method, { local: true });
  } catch (err) {
    throw toConnectError(err);
  }
}

// The daemon's local API: `get` downloads through it, schedulers trigger seed
// downloads through it.
export function daemonService(deps: DaemonServiceDeps): ServiceImpl<typeof daemonv1.DaemonService> {
  // A daemon draining for exit takes no new downloads: the caller should
  // use another daemon (or retry once this one is back).
  const refuseWhenShuttingDown = () => {
    if (deps.shuttingDown?.()) throw new DamselflyError("DF_ERR_SHUTTING_DOWN", "the daemon is shutting down and takes no new downloads");
  };
  const downloads = { tasks: deps.tasks, logger: deps.logger, metrics: deps.metrics, refuseWhenShuttingDown, access: deps.access, s3: deps.s3 };
  const cache = cacheHandlers(deps);
  return {
    listTasks: async (req, ctx) => {
      gate(ctx, "ListTasks");
      return cache.listTasks(req, ctx);
    },
    pruneTasks: async (req, ctx) => {
      gate(ctx, "PruneTasks");
      return cache.pruneTasks(req, ctx);
    },
    downloadTask: async function* (req, ctx) {
      gate(ctx, "DownloadTask");
      yield* downloadTask(downloads, req, ctx);
    },
    triggerTask: async (req, ctx) => {
      gate(ctx, "TriggerTask");
      return triggerTask(downloads, req, ctx);
    },
    deleteTask: async (req, ctx) => {
      gate(ctx, "DeleteTask");
      return deleteTask(deps, req, ctx);
    },
    statTask: async (req, ctx) => {
      gate(ctx, "StatTask");
      return statTask(deps, req);
    },
    sourceDefaults: async (_req, ctx) => {
      gate(ctx, "SourceDefaults");
      const s3 = deps.s3?.options;
      return { s3Endpoint: s3?.endpoint ?? "", s3Region: s3?.region ?? "", s3PathStyle: s3?.pathStyle ?? false, hfEndpoint: deps.hfEndpoint ?? "" };
    },
    // `cache import|stat|export`: like `cache list`, with the cluster token.
    importTask: async (reqs, ctx) => {
      gate(ctx, "ImportTask");
      try {
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        refuseWhenShuttingDown();
        return await importTask({ tasks: deps.tasks, logger: deps.logger }, reqs);
      } catch (err) {
        throw toConnectError(err);
      }
    },
    statCacheTask: async (req, ctx) => {
      gate(ctx, "StatCacheTask");
      try {
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        return await statCacheTask(deps.tasks, req);
      } catch (err) {
        throw toConnectError(err);
      }
    },
  };
}

// A scheduler asks this daemon to download a task (as a seed).
async function triggerTask(deps: DownloadTaskDeps, req: daemonv1.TriggerTaskRequest, ctx: HandlerContext): Promise<{ taskId: string }> {
  const span = startSpan("TriggerTask", { kind: SpanKind.SERVER, parent: traceOfHeaders(ctx.requestHeader), attributes: { "damselfly.task_id": req.taskId } });
  try {
    deps.refuseWhenShuttingDown();
    const d = validateDownload(req.download);
    const id = deps.tasks.taskIdOf(d);
    if (req.taskId && req.taskId !== id) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `task id ${req.taskId} does not match the download (${id})`);
    // Seed triggers fill the swarm ahead of demand on this host: they
    // yield to this host's own real-time pulls.
    const h = await deps.tasks.ensure(d, id, { background: true, trace: span });
    span.setAttribute("damselfly.running", h.run !== undefined);
    deps.logger.info({ taskId: id, running: h.run !== undefined }, "task triggered by the scheduler");
    return { taskId: id };
  } catch (err) {
    span.setError(err);
    throw toConnectError(err);
  } finally {
    span.end();
  }
}

async function deleteTask(deps: DaemonServiceDeps, req: daemonv1.DeleteTaskRequest, ctx: HandlerContext): Promise<{ deleted: boolean; freedBytes?: bigint }> {
  const { tasks, logger } = deps;
  try {
    checkClusterToken(deps.clusterToken, ctx.requestHeader);
    if (!isTaskId(req.taskId)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "task_id must be 64 hex characters");
    const held = deps.storage.get(req.taskId) !== undefined || tasks.isActive(req.taskId);
    if (!held) return { deleted: false };
    if (req.refuseInUse) {
      // `cache rm`: only a task nothing holds, checked and removed in one go.
      const t = deps.storage.get(req.taskId);
      if (!t) return { deleted: false };
      const users = t.inUse;
      if (users > 0)
        throw new DamselflyError(
          "DF_ERR_TASK_IN_USE",
          `task ${req.taskId} is being downloaded, read or uploaded (${users} holder(s)); retry later or use --force`,
        );
      const { removed, freed } = await tasks.removeIdle([t]);
      if (removed.length === 0) throw new DamselflyError("DF_ERR_TASK_IN_USE", `task ${req.taskId} is in use; retry later or use --force`);
      logger.info({ taskId: req.taskId, bytesFreed: freed }, "task removed from the cache");
      return { deleted: true, freedBytes: BigInt(freed) };
    }
    const freed = await tasks.discard(req.taskId, new DamselflyError("DF_ERR_CANCELLED", "task deleted"));
    logger.info({ taskId: req.taskId, bytesFreed: freed }, "task deleted");
    return { deleted: true, freedBytes: BigInt(freed) };
  } catch (err) {
    throw toConnectError(err);
  }
}

async function statTask(deps: DaemonServiceDeps, req: daemonv1.StatTaskRequest) {
  const t = deps.storage.get(req.taskId);
  if (!t) throw toConnectError(new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${req.taskId} is not on this daemon`));
  return {
    taskId: t.id,
    contentLength: BigInt(Math.max(0, t.meta.contentLength)),
    pieceLength: BigInt(t.meta.pieceLength),
    totalPieces: Math.max(0, t.totalPieces),
    finishedPieces: t.pieces.size,
    done: t.done,
  };
}
