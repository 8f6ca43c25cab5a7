import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../../common/errors.js";
import { isTaskId } from "../../common/task-id.js";
import { daemonv1, fromConnectError, isCacheDigestOf, isCacheUrl } from "../../protocol/index.js";
import type { DownloadManager } from "../download-manager.js";

const SCHEDULER_TIMEOUT_MS = 5_000;

// StatCacheTask (`cache stat`, and `cache export` to learn the digest): the
// task as this daemon stores it, and as its scheduler knows it. A digest is
// passed on only if the ID is made of it (isCacheDigestOf): neither a
// scheduler nor a store file is believed on its word.
export async function statCacheTask(tasks: DownloadManager, req: daemonv1.StatCacheTaskRequest): Promise<daemonv1.StatCacheTaskResponse> {
  const id = req.taskId;
  if (!isTaskId(id)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "task_id must be 64 lowercase hex characters");
  const { storage, scheduler } = tasks.importDeps;
  const res = create(daemonv1.StatCacheTaskResponseSchema, { taskId: id });
  const t = storage.get(id);
  if (t) {
    const claimed = isCacheUrl(t.meta.url) ? (t.meta.digestTaskId ?? "") : "";
    if (isCacheDigestOf(id, claimed)) res.digest = claimed;
    res.local = create(daemonv1.CacheTaskSchema, {
      taskId: id,
      url: isCacheUrl(t.meta.url) ? t.meta.url : "",
      contentLength: BigInt(Math.max(0, t.meta.contentLength)),
      contentLengthKnown: t.infoKnown,
      pieceLength: BigInt(Math.max(0, t.meta.pieceLength)),
      totalPieces: Math.max(0, t.totalPieces),
      finishedPieces: t.pieces.size,
      state: t.done ? "done" : tasks.isRunning(id) ? "downloading" : "partial",
      createdAtMs: BigInt(t.meta.createdAt),
      lastAccessMs: BigInt(t.meta.lastAccessAt),
      inUse: t.inUse,
      diskBytes: BigInt(await storage.diskBytes(t)),
    });
  }
  if (!scheduler) {
    res.schedulerError = "no scheduler configured";
    return res;
  }
  try {
    const s = await scheduler.ask(id, (c) => c.statTask({ taskId: id }, { timeoutMs: SCHEDULER_TIMEOUT_MS }));
    res.schedulerKnown = true;
    res.holders = s.finishedPeerCount;
    res.peers = s.peerCount;
    res.contentLength = s.task?.contentLength ?? 0n;
    if (!res.digest && isCacheDigestOf(id, s.digest)) res.digest = s.digest;
  } catch (err) {
    const e = fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE");
    if (e.code !== "DF_ERR_TASK_NOT_FOUND") res.schedulerError = `${e.code}: ${e.message}`;
  }
  return res;
}
