import * as S from "../gen/damselfly/scheduler/v1/scheduler_pb.js";
import { tagsOf } from "./wire.js";

// The scheduler messages the hand codecs in this folder read or write, with
// the proto type each codec assumes of every field it touches; the tags are
// derived from the generated descriptors (see wire.ts).

// Only the members the fast paths take; the rest go to the generated code.
export const ANNOUNCE_PEER_REQUEST = tagsOf(S.AnnouncePeerRequestSchema, {
  hostId: "string",
  taskId: "string",
  peerId: "string",
  downloadPeerStarted: "message",
  pieceFinished: "message",
  pieceFailed: "message",
  peerFinished: "message",
  piecesFinished: "message",
});
export const ANNOUNCE_PEER_RESPONSE = tagsOf(S.AnnouncePeerResponseSchema, {
  normalTask: "message",
  needBackToSource: "message",
  emptyTask: "message",
  taskFailed: "message",
  localHit: "message",
});

// Messages handled whole: every field, in field number order.
export const DOWNLOAD_PEER_STARTED = tagsOf(S.DownloadPeerStartedRequestSchema, {});
export const PIECE_FINISHED = tagsOf(S.PieceFinishedRequestSchema, {
  number: "uint32",
  length: "uint64",
  crc32: "uint32",
  parentId: "string",
  costMicros: "uint64",
});
export const PIECES_FINISHED = tagsOf(S.PiecesFinishedRequestSchema, { pieces: "repeated message" });
export const PIECE_FAILED = tagsOf(S.PieceFailedRequestSchema, { number: "uint32", parentId: "string", reason: "string", temporary: "bool" });
export const PEER_FINISHED = tagsOf(S.PeerFinishedRequestSchema, { contentLength: "uint64", pieceLength: "uint64", totalPieces: "uint32" });
export const NORMAL_TASK = tagsOf(S.NormalTaskResponseSchema, { candidateParents: "repeated message", task: "message" });
export const CANDIDATE_PARENT = tagsOf(S.CandidateParentSchema, {
  peerId: "string",
  hostId: "string",
  ip: "string",
  uploadPort: "uint32",
  hostType: "enum",
  finishedPieces: "uint32",
  finished: "bool",
});
export const TASK_INFO = tagsOf(S.TaskInfoSchema, { contentLength: "uint64", pieceLength: "uint64", totalPieces: "uint32", contentLengthKnown: "bool" });

export const WHOLE = [DOWNLOAD_PEER_STARTED, PIECE_FINISHED, PIECES_FINISHED, PIECE_FAILED, PEER_FINISHED, NORMAL_TASK, CANDIDATE_PARENT, TASK_INFO];
