import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { redactUrl } from "../../common/url-redact.js";
import { checkClusterToken, daemonv1, toConnectError } from "../../protocol/index.js";
import type { DownloadManager } from "../download-manager.js";
import type { DiskGc, PruneRequest } from "../storage/gc.js";

// Caps what a prune request may name (ms, bytes): beyond any real store.
const MAX_U64_INPUT = BigInt(Number.MAX_SAFE_INTEGER);

// `damselfly cache list|prune` on the daemon's local API. Like task deletion,
// these need the cluster token when one is set.
export function cacheHandlers(deps: { tasks: DownloadManager; gc: DiskGc; logger: Logger; clusterToken?: string | undefined }) {
  const { tasks, gc } = deps;
  return {
    async listTasks(_req: daemonv1.ListTasksRequest, ctx: HandlerContext): Promise<daemonv1.ListTasksResponse> {
      try {
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        const [{ tasks: all, total }, p] = await Promise.all([gc.usage(), gc.policy()]);
        return create(daemonv1.ListTasksResponseSchema, {
          tasks: all.map(({ task: t, bytes }) =>
            create(daemonv1.CacheTaskSchema, {
              taskId: t.id,
              // task.json of earlier versions kept secrets.
              url: redactUrl(t.meta.url),
              contentLength: BigInt(Math.max(0, t.meta.contentLength)),
              contentLengthKnown: t.infoKnown,
              pieceLength: BigInt(Math.max(0, t.meta.pieceLength)),
              totalPieces: Math.max(0, t.totalPieces),
              finishedPieces: t.pieces.size,
              state: t.done ? "done" : tasks.isRunning(t.id) ? "downloading" : "partial",
              createdAtMs: BigInt(t.meta.createdAt),
              lastAccessMs: BigInt(t.meta.lastAccessAt),
              inUse: t.inUse,
              diskBytes: BigInt(bytes),
            }),
          ),
          diskBytes: BigInt(total),
          policy: {
            taskTtlMs: BigInt(p.taskTtlMs),
            highWatermarkBytes: BigInt(p.highBytes),
            lowWatermarkBytes: BigInt(p.lowBytes),
            intervalMs: BigInt(p.intervalMs),
          },
        });
      } catch (err) {
        throw toConnectError(err);
      }
    },

    async pruneTasks(req: daemonv1.PruneTasksRequest, ctx: HandlerContext): Promise<daemonv1.PruneTasksResponse> {
      try {
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        const given = [req.all, req.olderThanMs > 0n, req.toBytes !== undefined].filter(Boolean).length;
        if (given > 1) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "name at most one of all, older_than_ms and to_bytes");
        if (req.olderThanMs > MAX_U64_INPUT || (req.toBytes ?? 0n) > MAX_U64_INPUT)
          throw new DamselflyError("DF_ERR_INVALID_REQUEST", "older_than_ms / to_bytes out of range");
        const pr: PruneRequest = req.all
          ? { all: true }
          : req.olderThanMs > 0n
            ? { olderThanMs: Number(req.olderThanMs) }
            : req.toBytes !== undefined
              ? { toBytes: Number(req.toBytes) }
              : {};
        const r = await gc.pass("prune", pr);
        return create(daemonv1.PruneTasksResponseSchema, {
          evictedTaskIds: r.evicted,
          freedBytes: BigInt(r.freedBytes),
          skippedInUse: r.skippedInUse,
          diskBytes: BigInt(r.diskBytes),
        });
      } catch (err) {
        throw toConnectError(err);
      }
    },
  };
}
