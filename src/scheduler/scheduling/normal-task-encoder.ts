import type { Host } from "../resources/host-manager.js";
import type { Peer } from "../resources/peer-manager.js";
import type { Task } from "../resources/task-manager.js";

// AnnouncePeerResponse{normal_task} straight to bytes: the same bytes
// toBinary(normalTask(...)) gives (a unit test holds the two together), for
// the gRPC fast path. It is the scheduler's most frequent answer, and building
// 15 CandidateParent messages and encoding them through protobuf-es's
// reflection (a TextEncoder call and a Uint8Array per string, a writer fork
// per message) cost ~7% of the scheduler's CPU at 5,000 decisions/s. Here it
// is two passes over the parents and one buffer.
//
// Field numbers and wire types from scheduler.proto:
//   AnnouncePeerResponse  normal_task = 1 (message)
//   NormalTaskResponse    candidate_parents = 1 (repeated message), task = 2 (message)
//   CandidateParent       peer_id = 1, host_id = 2, ip = 3 (string), upload_port = 4 (uint32),
//                         host_type = 5 (enum), finished_pieces = 6 (uint32), finished = 7 (bool)
//   TaskInfo              content_length = 1, piece_length = 2 (uint64), total_pieces = 3 (uint32),
//                         content_length_known = 4 (bool)
// proto3 rules as protobuf-es writes them: fields in number order, scalars
// at their zero value left out, set message fields written even when empty.

const LEN = 2;
const VARINT = 0;
const tag = (field: number, wire: number) => (field << 3) | wire;

// Bytes of `s` in UTF-8; a lone surrogate counts as U+FFFD (3 bytes), as
// TextEncoder and Buffer.write encode it.
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A pair: 2 UTF-16 units, 4 bytes.
      n += 2;
      i++;
    } else n += 2;
  }
  return n;
}

function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
// A uint64 as a number when it is one exactly, else as a bigint.
const u64 = (v: bigint): number | bigint => (v <= MAX_SAFE ? Number(v) : v);

function u64Length(v: number | bigint): number {
  if (typeof v === "number") return varintLength(v);
  let n = 1;
  while (v >= 128n) {
    v >>= 7n;
    n++;
  }
  return n;
}

// int32 on the wire: negative values as their 64-bit two's complement.
const int32 = (v: number): number | bigint => (v >= 0 ? v : BigInt.asUintN(64, BigInt(v)));

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(v: number): void {
    const b = this.buf;
    while (v >= 128) {
      b[this.pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    b[this.pos++] = v;
  }

  u64(v: number | bigint): void {
    if (typeof v === "number") return this.varint(v);
    while (v >= 128n) {
      this.buf[this.pos++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  // `bytes`: utf8Length(s), already computed for the length prefix.
  string(field: number, s: string, bytes: number): void {
    this.varint(tag(field, LEN));
    this.varint(bytes);
    if (bytes === s.length) {
      const b = this.buf;
      for (let i = 0; i < s.length; i++) b[this.pos++] = s.charCodeAt(i);
    } else {
      this.pos += this.buf.write(s, this.pos, bytes, "utf8");
    }
  }
}

export interface ParentWithHost {
  peer: Peer;
  host: Host;
}

// Per-call scratch: sizes found in the first pass, used in the second.
const scratch: number[] = [];

function candidateLength(p: Peer, h: Host, k: number): number {
  const idLen = utf8Length(p.id);
  const hostLen = utf8Length(h.id);
  const ipLen = utf8Length(h.ip);
  scratch[4 * k] = idLen;
  scratch[4 * k + 1] = hostLen;
  scratch[4 * k + 2] = ipLen;
  let n = 0;
  if (idLen > 0) n += 1 + varintLength(idLen) + idLen;
  if (hostLen > 0) n += 1 + varintLength(hostLen) + hostLen;
  if (ipLen > 0) n += 1 + varintLength(ipLen) + ipLen;
  if (h.uploadPort !== 0) n += 1 + varintLength(h.uploadPort);
  const type = h.type;
  if (type !== 0) n += 1 + u64Length(int32(type));
  if (p.finishedPieces !== 0) n += 1 + varintLength(p.finishedPieces);
  if (p.state === "succeeded") n += 2;
  scratch[4 * k + 3] = n;
  return n;
}

function writeCandidate(w: Writer, p: Peer, h: Host, k: number): void {
  const idLen = scratch[4 * k]!;
  const hostLen = scratch[4 * k + 1]!;
  const ipLen = scratch[4 * k + 2]!;
  w.varint(tag(1, LEN));
  w.varint(scratch[4 * k + 3]!);
  if (idLen > 0) w.string(1, p.id, idLen);
  if (hostLen > 0) w.string(2, h.id, hostLen);
  if (ipLen > 0) w.string(3, h.ip, ipLen);
  if (h.uploadPort !== 0) {
    w.varint(tag(4, VARINT));
    w.varint(h.uploadPort);
  }
  const type = h.type;
  if (type !== 0) {
    w.varint(tag(5, VARINT));
    w.u64(int32(type));
  }
  if (p.finishedPieces !== 0) {
    w.varint(tag(6, VARINT));
    w.varint(p.finishedPieces);
  }
  if (p.state === "succeeded") {
    w.varint(tag(7, VARINT));
    w.varint(1);
  }
}

export function encodeNormalTask(task: Task, parents: readonly ParentWithHost[]): Buffer {
  const contentLength = u64(task.contentLength);
  const pieceLength = u64(task.pieceLength);
  let info = 0;
  if (contentLength !== 0) info += 1 + u64Length(contentLength);
  if (pieceLength !== 0) info += 1 + u64Length(pieceLength);
  if (task.totalPieces !== 0) info += 1 + varintLength(task.totalPieces);
  if (task.contentLengthKnown) info += 2;
  let normal = 1 + varintLength(info) + info;
  for (let k = 0; k < parents.length; k++) {
    const n = candidateLength(parents[k]!.peer, parents[k]!.host, k);
    normal += 1 + varintLength(n) + n;
  }
  const w = new Writer(Buffer.allocUnsafe(1 + varintLength(normal) + normal));
  w.varint(tag(1, LEN));
  w.varint(normal);
  for (let k = 0; k < parents.length; k++) writeCandidate(w, parents[k]!.peer, parents[k]!.host, k);
  w.varint(tag(2, LEN));
  w.varint(info);
  if (contentLength !== 0) {
    w.varint(tag(1, VARINT));
    w.u64(contentLength);
  }
  if (pieceLength !== 0) {
    w.varint(tag(2, VARINT));
    w.u64(pieceLength);
  }
  if (task.totalPieces !== 0) {
    w.varint(tag(3, VARINT));
    w.varint(task.totalPieces);
  }
  if (task.contentLengthKnown) {
    w.varint(tag(4, VARINT));
    w.varint(1);
  }
  if (w.pos !== w.buf.length) throw new Error(`normal_task encoder: wrote ${w.pos} of ${w.buf.length} bytes`);
  return w.buf;
}
