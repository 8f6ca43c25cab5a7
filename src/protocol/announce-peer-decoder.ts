import type * as schedulerv1 from "./gen/damselfly/scheduler/v1/scheduler_pb.js";

// AnnouncePeerRequest from bytes without protobuf-es's reflection, for the
// messages a download sends by the hundred (piece reports, started,
// finished). At 5,000 downloads/s fromBinary was ~17% of the scheduler's CPU:
// a reflection object, a field lookup and a TextDecoder call per field.
//
// It decodes only what it can decode exactly as fromBinary would, and
// returns undefined for anything else (registration, reschedule, a
// non-ASCII string, an unknown field, a repeated oneof, a varint longer than
// these fields need...); the caller then uses fromBinary, so every input
// still gets fromBinary's answer, errors included. A unit test compares the
// two on generated messages.
//
// Field numbers and types from scheduler.proto:
//   AnnouncePeerRequest  host_id = 1, task_id = 2, peer_id = 3 (string); oneof request:
//                        download_peer_started = 11, piece_finished = 15, piece_failed = 16,
//                        peer_finished = 18, pieces_finished = 20 (the ones decoded here)
//   PieceFinishedRequest number = 1 (uint32), length = 2 (uint64), crc32 = 3 (uint32),
//                        parent_id = 4 (string), cost_micros = 5 (uint64)
//   PiecesFinishedRequest pieces = 1 (repeated PieceFinishedRequest)
//   PieceFailedRequest   number = 1 (uint32), parent_id = 2, reason = 3 (string), temporary = 4 (bool)
//   PeerFinishedRequest  content_length = 1, piece_length = 2 (uint64), total_pieces = 3 (uint32)

type Req = schedulerv1.AnnouncePeerRequest;
type Piece = schedulerv1.PieceFinishedRequest;

const VARINT = 0;
const LEN = 2;
const BAIL = -1;

// Read position over one message's bytes; every read returns BAIL (or
// undefined) on what the fast path does not take.
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  // Varints below 2^28 (at most 4 bytes): tags, lengths, uint32 values.
  // fromBinary reads longer ones with 32-bit wraparound: left to it.
  u28(end: number): number {
    let v = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (this.pos >= end) return BAIL;
      const b = this.buf[this.pos++]!;
      v |= (b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    return BAIL;
  }

  // uint64 values below 2^49 (at most 7 bytes) as the bigint fromBinary gives.
  u49(end: number): bigint | undefined {
    let v = 0;
    let mul = 1;
    for (let k = 0; k < 7; k++) {
      if (this.pos >= end) return undefined;
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return BigInt(v);
      mul *= 128;
    }
    return undefined;
  }

  // Length-delimited field: its end, or BAIL.
  span(end: number): number {
    const len = this.u28(end);
    if (len === BAIL || this.pos + len > end) return BAIL;
    return this.pos + len;
  }

  // ASCII strings only: any other byte is left to fromBinary's UTF-8 check.
  ascii(end: number): string | undefined {
    const e = this.span(end);
    if (e === BAIL) return undefined;
    const b = this.buf;
    for (let i = this.pos; i < e; i++) if (b[i]! >= 0x80) return undefined;
    const s = e === this.pos ? "" : b.toString("latin1", this.pos, e);
    this.pos = e;
    return s;
  }
}

function pieceFinished(r: Reader, end: number): Piece | undefined {
  const p: Piece = { $typeName: "damselfly.scheduler.v1.PieceFinishedRequest", number: 0, length: 0n, crc32: 0, parentId: "", costMicros: 0n };
  while (r.pos < end) {
    const tag = r.u28(end);
    switch (tag) {
      case (1 << 3) | VARINT: {
        const v = r.u28(end);
        if (v === BAIL) return undefined;
        p.number = v;
        break;
      }
      case (2 << 3) | VARINT: {
        const v = r.u49(end);
        if (v === undefined) return undefined;
        p.length = v;
        break;
      }
      case (3 << 3) | VARINT: {
        const v = r.u28(end);
        if (v === BAIL) return undefined;
        p.crc32 = v;
        break;
      }
      case (4 << 3) | LEN: {
        const v = r.ascii(end);
        if (v === undefined) return undefined;
        p.parentId = v;
        break;
      }
      case (5 << 3) | VARINT: {
        const v = r.u49(end);
        if (v === undefined) return undefined;
        p.costMicros = v;
        break;
      }
      default:
        return undefined;
    }
  }
  return p;
}

function piecesFinished(r: Reader, end: number): schedulerv1.PiecesFinishedRequest | undefined {
  const pieces: Piece[] = [];
  while (r.pos < end) {
    if (r.u28(end) !== ((1 << 3) | LEN)) return undefined;
    const e = r.span(end);
    if (e === BAIL) return undefined;
    const p = pieceFinished(r, e);
    if (!p) return undefined;
    pieces.push(p);
  }
  return { $typeName: "damselfly.scheduler.v1.PiecesFinishedRequest", pieces };
}

function pieceFailed(r: Reader, end: number): schedulerv1.PieceFailedRequest | undefined {
  const p: schedulerv1.PieceFailedRequest = { $typeName: "damselfly.scheduler.v1.PieceFailedRequest", number: 0, parentId: "", reason: "", temporary: false };
  while (r.pos < end) {
    const tag = r.u28(end);
    switch (tag) {
      case (1 << 3) | VARINT: {
        const v = r.u28(end);
        if (v === BAIL) return undefined;
        p.number = v;
        break;
      }
      case (2 << 3) | LEN:
      case (3 << 3) | LEN: {
        const v = r.ascii(end);
        if (v === undefined) return undefined;
        if (tag === ((2 << 3) | LEN)) p.parentId = v;
        else p.reason = v;
        break;
      }
      case (4 << 3) | VARINT: {
        const v = r.u28(end);
        if (v !== 0 && v !== 1) return undefined;
        p.temporary = v === 1;
        break;
      }
      default:
        return undefined;
    }
  }
  return p;
}

function peerFinished(r: Reader, end: number): schedulerv1.PeerFinishedRequest | undefined {
  const p: schedulerv1.PeerFinishedRequest = { $typeName: "damselfly.scheduler.v1.PeerFinishedRequest", contentLength: 0n, pieceLength: 0n, totalPieces: 0 };
  while (r.pos < end) {
    const tag = r.u28(end);
    switch (tag) {
      case (1 << 3) | VARINT:
      case (2 << 3) | VARINT: {
        const v = r.u49(end);
        if (v === undefined) return undefined;
        if (tag === ((1 << 3) | VARINT)) p.contentLength = v;
        else p.pieceLength = v;
        break;
      }
      case (3 << 3) | VARINT: {
        const v = r.u28(end);
        if (v === BAIL) return undefined;
        p.totalPieces = v;
        break;
      }
      default:
        return undefined;
    }
  }
  return p;
}

export function decodeAnnouncePeerRequest(bytes: Uint8Array): Req | undefined {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = buf.length;
  const r = new Reader(buf, 0, end);
  const m: Req = { $typeName: "damselfly.scheduler.v1.AnnouncePeerRequest", hostId: "", taskId: "", peerId: "", request: { case: undefined } };
  let haveRequest = false;
  while (r.pos < end) {
    const tag = r.u28(end);
    if (tag === BAIL) return undefined;
    const field = tag >>> 3;
    if ((tag & 7) !== LEN) return undefined;
    if (field <= 3) {
      const s = r.ascii(end);
      if (s === undefined) return undefined;
      if (field === 1) m.hostId = s;
      else if (field === 2) m.taskId = s;
      else if (field === 3) m.peerId = s;
      else return undefined;
      continue;
    }
    // A second oneof member (fromBinary merges or replaces): its business.
    if (haveRequest) return undefined;
    haveRequest = true;
    const e = r.span(end);
    if (e === BAIL) return undefined;
    switch (field) {
      case 20: {
        const v = piecesFinished(r, e);
        if (!v) return undefined;
        m.request = { case: "piecesFinished", value: v };
        break;
      }
      case 15: {
        const v = pieceFinished(r, e);
        if (!v) return undefined;
        m.request = { case: "pieceFinished", value: v };
        break;
      }
      case 11:
        if (e !== r.pos) return undefined;
        m.request = { case: "downloadPeerStarted", value: { $typeName: "damselfly.scheduler.v1.DownloadPeerStartedRequest" } };
        break;
      case 16: {
        const v = pieceFailed(r, e);
        if (!v) return undefined;
        m.request = { case: "pieceFailed", value: v };
        break;
      }
      case 18: {
        const v = peerFinished(r, e);
        if (!v) return undefined;
        m.request = { case: "peerFinished", value: v };
        break;
      }
      default:
        return undefined;
    }
    r.pos = e;
  }
  return m;
}
