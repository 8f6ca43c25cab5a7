import * as S from "../gen/damselfly/scheduler/v1/scheduler_pb.js";
import { fieldTag, int32, u64, u64Length, utf8Length, varintLength, Writer } from "./wire.js";

// AnnouncePeerResponse{normal_task} straight to bytes: the same bytes
// toBinary(create(...)) gives, for the scheduler's gRPC fast path. It is the
// scheduler's most frequent answer, and building a dozen CandidateParent
// messages and encoding them through protobuf-es's reflection costs many
// times more (docs/decisions/wire-codecs.md). Here it is two passes over the
// parents and one buffer. Tags come from the generated descriptors;
// test/unit/normal-task-encoder.test.ts holds the bytes to toBinary's.
//
// proto3 rules as protobuf-es writes them: fields in number order, scalars
// at their zero value left out, set message fields written even when empty.

// What a candidate parent's fields are read from (the scheduler's Peer and
// Host have these).
export interface CandidateSource {
  peer: { readonly id: string; readonly finishedPieces: number; readonly state: string };
  host: { readonly id: string; readonly ip: string; readonly uploadPort: number; readonly type: number };
}

// TaskInfo's fields.
export interface TaskInfoSource {
  readonly contentLength: bigint;
  readonly pieceLength: bigint;
  readonly totalPieces: number;
  readonly contentLengthKnown: boolean;
}

// CandidateParent.finished: the parent has every piece.
export const isFinishedParent = (p: CandidateSource["peer"]): boolean => p.state === "succeeded";

const NORMAL_TASK = fieldTag(S.AnnouncePeerResponseSchema.field.normalTask, "message");
const N = S.NormalTaskResponseSchema.field;
const CANDIDATES = fieldTag(N.candidateParents, "repeated message");
const TASK = fieldTag(N.task, "message");
const C = S.CandidateParentSchema.field;
const PEER_ID = fieldTag(C.peerId, "string");
const HOST_ID = fieldTag(C.hostId, "string");
const IP = fieldTag(C.ip, "string");
const UPLOAD_PORT = fieldTag(C.uploadPort, "uint32");
const HOST_TYPE = fieldTag(C.hostType, "enum");
const FINISHED_PIECES = fieldTag(C.finishedPieces, "uint32");
const FINISHED = fieldTag(C.finished, "bool");
const T = S.TaskInfoSchema.field;
const CONTENT_LENGTH = fieldTag(T.contentLength, "uint64");
const PIECE_LENGTH = fieldTag(T.pieceLength, "uint64");
const TOTAL_PIECES = fieldTag(T.totalPieces, "uint32");
const CONTENT_LENGTH_KNOWN = fieldTag(T.contentLengthKnown, "bool");

// The fields written, by message, in the order written (which must be field
// number order): the conformance test checks them against the descriptors.
export const ENCODED_FIELDS: Record<string, readonly string[]> = {
  [S.NormalTaskResponseSchema.typeName]: ["candidateParents", "task"],
  [S.CandidateParentSchema.typeName]: ["peerId", "hostId", "ip", "uploadPort", "hostType", "finishedPieces", "finished"],
  [S.TaskInfoSchema.typeName]: ["contentLength", "pieceLength", "totalPieces", "contentLengthKnown"],
};

const tagLength = varintLength;

// Per-call scratch: sizes found in the first pass, used in the second.
const scratch: number[] = [];

function candidateLength({ peer: p, host: h }: CandidateSource, k: number): number {
  const idLen = utf8Length(p.id);
  const hostLen = utf8Length(h.id);
  const ipLen = utf8Length(h.ip);
  scratch[4 * k] = idLen;
  scratch[4 * k + 1] = hostLen;
  scratch[4 * k + 2] = ipLen;
  let n = 0;
  if (idLen > 0) n += tagLength(PEER_ID) + varintLength(idLen) + idLen;
  if (hostLen > 0) n += tagLength(HOST_ID) + varintLength(hostLen) + hostLen;
  if (ipLen > 0) n += tagLength(IP) + varintLength(ipLen) + ipLen;
  if (h.uploadPort !== 0) n += tagLength(UPLOAD_PORT) + varintLength(h.uploadPort);
  if (h.type !== 0) n += tagLength(HOST_TYPE) + u64Length(int32(h.type));
  if (p.finishedPieces !== 0) n += tagLength(FINISHED_PIECES) + varintLength(p.finishedPieces);
  if (isFinishedParent(p)) n += tagLength(FINISHED) + 1;
  scratch[4 * k + 3] = n;
  return n;
}

function writeCandidate(w: Writer, { peer: p, host: h }: CandidateSource, k: number): void {
  const idLen = scratch[4 * k]!;
  const hostLen = scratch[4 * k + 1]!;
  const ipLen = scratch[4 * k + 2]!;
  w.varint(CANDIDATES);
  w.varint(scratch[4 * k + 3]!);
  if (idLen > 0) w.string(PEER_ID, p.id, idLen);
  if (hostLen > 0) w.string(HOST_ID, h.id, hostLen);
  if (ipLen > 0) w.string(IP, h.ip, ipLen);
  if (h.uploadPort !== 0) {
    w.varint(UPLOAD_PORT);
    w.varint(h.uploadPort);
  }
  if (h.type !== 0) {
    w.varint(HOST_TYPE);
    w.u64(int32(h.type));
  }
  if (p.finishedPieces !== 0) {
    w.varint(FINISHED_PIECES);
    w.varint(p.finishedPieces);
  }
  if (isFinishedParent(p)) {
    w.varint(FINISHED);
    w.varint(1);
  }
}

function taskInfoLength(task: TaskInfoSource, contentLength: number | bigint, pieceLength: number | bigint): number {
  let n = 0;
  if (contentLength !== 0) n += tagLength(CONTENT_LENGTH) + u64Length(contentLength);
  if (pieceLength !== 0) n += tagLength(PIECE_LENGTH) + u64Length(pieceLength);
  if (task.totalPieces !== 0) n += tagLength(TOTAL_PIECES) + varintLength(task.totalPieces);
  if (task.contentLengthKnown) n += tagLength(CONTENT_LENGTH_KNOWN) + 1;
  return n;
}

function writeTaskInfo(w: Writer, task: TaskInfoSource, contentLength: number | bigint, pieceLength: number | bigint): void {
  if (contentLength !== 0) {
    w.varint(CONTENT_LENGTH);
    w.u64(contentLength);
  }
  if (pieceLength !== 0) {
    w.varint(PIECE_LENGTH);
    w.u64(pieceLength);
  }
  if (task.totalPieces !== 0) {
    w.varint(TOTAL_PIECES);
    w.varint(task.totalPieces);
  }
  if (task.contentLengthKnown) {
    w.varint(CONTENT_LENGTH_KNOWN);
    w.varint(1);
  }
}

export function encodeNormalTask(task: TaskInfoSource, parents: readonly CandidateSource[]): Buffer {
  const contentLength = u64(task.contentLength);
  const pieceLength = u64(task.pieceLength);
  const info = taskInfoLength(task, contentLength, pieceLength);
  let normal = tagLength(TASK) + varintLength(info) + info;
  for (let k = 0; k < parents.length; k++) {
    const n = candidateLength(parents[k]!, k);
    normal += tagLength(CANDIDATES) + varintLength(n) + n;
  }
  const w = new Writer(Buffer.allocUnsafe(tagLength(NORMAL_TASK) + varintLength(normal) + normal));
  w.varint(NORMAL_TASK);
  w.varint(normal);
  for (let k = 0; k < parents.length; k++) writeCandidate(w, parents[k]!, k);
  w.varint(TASK);
  w.varint(info);
  writeTaskInfo(w, task, contentLength, pieceLength);
  if (w.pos !== w.buf.length) throw new Error(`normal_task encoder: wrote ${w.pos} of ${w.buf.length} bytes`);
  return w.buf;
}
