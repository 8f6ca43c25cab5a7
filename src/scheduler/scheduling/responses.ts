import { create } from "@bufbuild/protobuf";
import { schedulerv1, type ErrorDetail, ErrorDetailSchema } from "../../protocol/index.js";
import type { ErrorCode } from "../../common/errors.js";
import { ERROR_CODES } from "../../common/errors.js";
import type { Host } from "../resources/host-manager.js";
import type { Peer } from "../resources/peer-manager.js";
import type { Task } from "../resources/task-manager.js";

// Builders for AnnouncePeerResponse messages.

export function candidateParent(p: Peer, h: Host): schedulerv1.CandidateParent {
  return create(schedulerv1.CandidateParentSchema, {
    peerId: p.id,
    hostId: h.id,
    ip: h.ip,
    uploadPort: h.uploadPort,
    hostType: h.type,
    finishedPieces: p.finishedPieces,
    finished: p.state === "succeeded",
  });
}

export function normalTask(task: Task, parents: readonly { peer: Peer; host: Host }[]): schedulerv1.AnnouncePeerResponse {
  return create(schedulerv1.AnnouncePeerResponseSchema, {
    response: {
      case: "normalTask",
      value: { candidateParents: parents.map(({ peer, host }) => candidateParent(peer, host)), task: task.toInfo() },
    },
  });
}

// `grant`: with TLS, the scheduler's signed grant (protocol/trust.ts).
export function needBackToSource(description: string, grant?: Uint8Array, keepParents = false): schedulerv1.AnnouncePeerResponse {
  return create(schedulerv1.AnnouncePeerResponseSchema, {
    response: { case: "needBackToSource", value: { description, keepParents, ...(grant ? { grant } : {}) } },
  });
}

export function emptyTask(): schedulerv1.AnnouncePeerResponse {
  return create(schedulerv1.AnnouncePeerResponseSchema, { response: { case: "emptyTask", value: {} } });
}

export function localHit(task: Task): schedulerv1.AnnouncePeerResponse {
  return create(schedulerv1.AnnouncePeerResponseSchema, { response: { case: "localHit", value: { task: task.toInfo() } } });
}

export function taskFailed(error: ErrorDetail): schedulerv1.AnnouncePeerResponse {
  return create(schedulerv1.AnnouncePeerResponseSchema, { response: { case: "taskFailed", value: { error } } });
}

export function errorDetail(code: ErrorCode, message?: string): ErrorDetail {
  return create(ErrorDetailSchema, { code, message: message ?? ERROR_CODES[code].message });
}

// Did the origin itself fail (as opposed to the fetching peer)?
export function isOriginFailure(d: ErrorDetail | undefined): boolean {
  if (!d) return false;
  return d.source !== undefined || d.code === "DF_ERR_SOURCE_STATUS" || d.code === "DF_ERR_SOURCE_UNREACHABLE";
}
