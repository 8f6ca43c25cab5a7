import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { isCacheUrl, schedulerv1 } from "../../protocol/index.js";
import type { LocalTask } from "../storage/local-task.js";

// Peer IDs are stable per (host, task) so a resumed or re-announced task is
// the same peer to the scheduler.
export function peerIdOf(hostId: string, taskId: string): string {
  return createHash("sha256").update(hostId).update(taskId).digest("hex").slice(0, 32);
}

// A finished task as the schedulers are told of it.
export function cachedTask(hostId: string, t: LocalTask): schedulerv1.CachedTask {
  return create(schedulerv1.CachedTaskSchema, {
    taskId: t.id,
    peerId: peerIdOf(hostId, t.id),
    contentLength: BigInt(t.meta.contentLength),
    pieceLength: BigInt(t.meta.pieceLength),
    totalPieces: t.totalPieces,
    // An imported task: whoever knows only its ID learns its digest.
    digest: isCacheUrl(t.meta.url) && t.meta.digestTaskId ? t.meta.digestTaskId : "",
  });
}
