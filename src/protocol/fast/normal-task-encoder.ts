import { ANNOUNCE_PEER_RESPONSE, CANDIDATE_PARENT, NORMAL_TASK, TASK_INFO } from "./scheduler-tags.js";
import { int32, u64, u64Length, utf8Length, varintLength, Writer } from "./wire.js";

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

const NORMAL = ANNOUNCE_PEER_RESPONSE.tag.normalTask;
const N = NORMAL_TASK.tag;
const C = CANDIDATE_PARENT.tag;
const T = TASK_INFO.tag;

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
  if (idLen > 0) n += tagLength(C.peerId) + varintLength(idLen) + idLen;
  if (hostLen > 0) n += tagLength(C.hostId) + varintLength(hostLen) + hostLen;
  if (ipLen > 0) n += tagLength(C.ip) + varintLength(ipLen) + ipLen;
  if (h.uploadPort !== 0) n += tagLength(C.uploadPort) + varintLength(h.uploadPort);
  if (h.type !== 0) n += tagLength(C.hostType) + u64Length(int32(h.type));
  if (p.finishedPieces !== 0) n += tagLength(C.finishedPieces) + varintLength(p.finishedPieces);
  if (isFinishedParent(p)) n += tagLength(C.finished) + 1;
  scratch[4 * k + 3] = n;
  return n;
}

function writeCandidate(w: Writer, { peer: p, host: h }: CandidateSource, k: number): void {
  const idLen = scratch[4 * k]!;
  const hostLen = scratch[4 * k + 1]!;
  const ipLen = scratch[4 * k + 2]!;
  w.varint(N.candidateParents);
  w.varint(scratch[4 * k + 3]!);
  if (idLen > 0) w.string(C.peerId, p.id, idLen);
  if (hostLen > 0) w.string(C.hostId, h.id, hostLen);
  if (ipLen > 0) w.string(C.ip, h.ip, ipLen);
  if (h.uploadPort !== 0) {
    w.varint(C.uploadPort);
    w.varint(h.uploadPort);
  }
  if (h.type !== 0) {
    w.varint(C.hostType);
    w.u64(int32(h.type));
  }
  if (p.finishedPieces !== 0) {
    w.varint(C.finishedPieces);
    w.varint(p.finishedPieces);
  }
  if (isFinishedParent(p)) {
    w.varint(C.finished);
    w.varint(1);
  }
}

function taskInfoLength(task: TaskInfoSource, contentLength: number | bigint, pieceLength: number | bigint): number {
  let n = 0;
  if (contentLength !== 0) n += tagLength(T.contentLength) + u64Length(contentLength);
  if (pieceLength !== 0) n += tagLength(T.pieceLength) + u64Length(pieceLength);
  if (task.totalPieces !== 0) n += tagLength(T.totalPieces) + varintLength(task.totalPieces);
  if (task.contentLengthKnown) n += tagLength(T.contentLengthKnown) + 1;
  return n;
}

function writeTaskInfo(w: Writer, task: TaskInfoSource, contentLength: number | bigint, pieceLength: number | bigint): void {
  if (contentLength !== 0) {
    w.varint(T.contentLength);
    w.u64(contentLength);
  }
  if (pieceLength !== 0) {
    w.varint(T.pieceLength);
    w.u64(pieceLength);
  }
  if (task.totalPieces !== 0) {
    w.varint(T.totalPieces);
    w.varint(task.totalPieces);
  }
  if (task.contentLengthKnown) {
    w.varint(T.contentLengthKnown);
    w.varint(1);
  }
}

export function encodeNormalTask(task: TaskInfoSource, parents: readonly CandidateSource[]): Buffer {
  const contentLength = u64(task.contentLength);
  const pieceLength = u64(task.pieceLength);
  const info = taskInfoLength(task, contentLength, pieceLength);
  let normal = tagLength(N.task) + varintLength(info) + info;
  for (let k = 0; k < parents.length; k++) {
    const n = candidateLength(parents[k]!, k);
    normal += tagLength(N.candidateParents) + varintLength(n) + n;
  }
  const w = new Writer(Buffer.allocUnsafe(tagLength(NORMAL) + varintLength(normal) + normal));
  w.varint(NORMAL);
  w.varint(normal);
  for (let k = 0; k < parents.length; k++) writeCandidate(w, parents[k]!, k);
  w.varint(N.task);
  w.varint(info);
  writeTaskInfo(w, task, contentLength, pieceLength);
  if (w.pos !== w.buf.length) throw new Error(`normal_task encoder: wrote ${w.pos} of ${w.buf.length} bytes`);
  return w.buf;
}
