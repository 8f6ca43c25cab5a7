import * as S from "../gen/damselfly/scheduler/v1/scheduler_pb.js";
import { BAIL, fieldTag, Reader } from "./wire.js";

// AnnouncePeerRequest from bytes without protobuf-es's reflection, for the
// messages a download sends by the hundred (piece reports, started,
// finished): fromBinary costs several times more per message
// (docs/decisions/wire-codecs.md).
//
// It decodes only what it can decode exactly as fromBinary would, and
// returns undefined for anything else (registration, reschedule, a
// non-ASCII string, an unknown field, a repeated oneof, a varint longer than
// these fields need...); the caller then uses fromBinary, so every input
// still gets fromBinary's answer, errors included. Tags come from the
// generated descriptors; test/unit/announce-peer-decoder.test.ts compares
// the two decoders on generated messages.

type Req = S.AnnouncePeerRequest;
type Piece = S.PieceFinishedRequest;

const R = S.AnnouncePeerRequestSchema.field;
const HOST_ID = fieldTag(R.hostId, "string");
const TASK_ID = fieldTag(R.taskId, "string");
const PEER_ID = fieldTag(R.peerId, "string");
const DOWNLOAD_PEER_STARTED = fieldTag(R.downloadPeerStarted, "message");
const PIECE_FINISHED = fieldTag(R.pieceFinished, "message");
const PIECE_FAILED = fieldTag(R.pieceFailed, "message");
const PEER_FINISHED = fieldTag(R.peerFinished, "message");
const PIECES_FINISHED = fieldTag(R.piecesFinished, "message");

const PF = S.PieceFinishedRequestSchema.field;
const PF_NUMBER = fieldTag(PF.number, "uint32");
const PF_LENGTH = fieldTag(PF.length, "uint64");
const PF_CRC32 = fieldTag(PF.crc32, "uint32");
const PF_PARENT_ID = fieldTag(PF.parentId, "string");
const PF_COST_MICROS = fieldTag(PF.costMicros, "uint64");

const PIECES = fieldTag(S.PiecesFinishedRequestSchema.field.pieces, "repeated message");

const PX = S.PieceFailedRequestSchema.field;
const PX_NUMBER = fieldTag(PX.number, "uint32");
const PX_PARENT_ID = fieldTag(PX.parentId, "string");
const PX_REASON = fieldTag(PX.reason, "string");
const PX_TEMPORARY = fieldTag(PX.temporary, "bool");

const PE = S.PeerFinishedRequestSchema.field;
const PE_CONTENT_LENGTH = fieldTag(PE.contentLength, "uint64");
const PE_PIECE_LENGTH = fieldTag(PE.pieceLength, "uint64");
const PE_TOTAL_PIECES = fieldTag(PE.totalPieces, "uint32");

// Every field this decoder reads, by message: the conformance test checks
// that it is every field of those messages (a new one would make the fast
// path decline every message that carries it).
export const DECODED_FIELDS: Record<string, readonly string[]> = {
  [S.PieceFinishedRequestSchema.typeName]: ["number", "length", "crc32", "parentId", "costMicros"],
  [S.PiecesFinishedRequestSchema.typeName]: ["pieces"],
  [S.PieceFailedRequestSchema.typeName]: ["number", "parentId", "reason", "temporary"],
  [S.PeerFinishedRequestSchema.typeName]: ["contentLength", "pieceLength", "totalPieces"],
  [S.DownloadPeerStartedRequestSchema.typeName]: [],
};

function pieceFinished(r: Reader, end: number): Piece | undefined {
  const p: Piece = { $typeName: S.PieceFinishedRequestSchema.typeName, number: 0, length: 0n, crc32: 0, parentId: "", costMicros: 0n };
  while (r.pos < end) {
    const tag = r.u28(end);
    if (tag === PF_NUMBER || tag === PF_CRC32) {
      const v = r.u28(end);
      if (v === BAIL) return undefined;
      if (tag === PF_NUMBER) p.number = v;
      else p.crc32 = v;
    } else if (tag === PF_LENGTH || tag === PF_COST_MICROS) {
      const v = r.u49(end);
      if (v === undefined) return undefined;
      if (tag === PF_LENGTH) p.length = v;
      else p.costMicros = v;
    } else if (tag === PF_PARENT_ID) {
      const v = r.ascii(end);
      if (v === undefined) return undefined;
      p.parentId = v;
    } else return undefined;
  }
  return p;
}

function piecesFinished(r: Reader, end: number): S.PiecesFinishedRequest | undefined {
  const pieces: Piece[] = [];
  while (r.pos < end) {
    if (r.u28(end) !== PIECES) return undefined;
    const e = r.span(end);
    if (e === BAIL) return undefined;
    const p = pieceFinished(r, e);
    if (!p) return undefined;
    pieces.push(p);
  }
  return { $typeName: S.PiecesFinishedRequestSchema.typeName, pieces };
}

function pieceFailed(r: Reader, end: number): S.PieceFailedRequest | undefined {
  const p: S.PieceFailedRequest = { $typeName: S.PieceFailedRequestSchema.typeName, number: 0, parentId: "", reason: "", temporary: false };
  while (r.pos < end) {
    const tag = r.u28(end);
    if (tag === PX_NUMBER) {
      const v = r.u28(end);
      if (v === BAIL) return undefined;
      p.number = v;
    } else if (tag === PX_PARENT_ID || tag === PX_REASON) {
      const v = r.ascii(end);
      if (v === undefined) return undefined;
      if (tag === PX_PARENT_ID) p.parentId = v;
      else p.reason = v;
    } else if (tag === PX_TEMPORARY) {
      const v = r.u28(end);
      if (v !== 0 && v !== 1) return undefined;
      p.temporary = v === 1;
    } else return undefined;
  }
  return p;
}

function peerFinished(r: Reader, end: number): S.PeerFinishedRequest | undefined {
  const p: S.PeerFinishedRequest = { $typeName: S.PeerFinishedRequestSchema.typeName, contentLength: 0n, pieceLength: 0n, totalPieces: 0 };
  while (r.pos < end) {
    const tag = r.u28(end);
    if (tag === PE_CONTENT_LENGTH || tag === PE_PIECE_LENGTH) {
      const v = r.u49(end);
      if (v === undefined) return undefined;
      if (tag === PE_CONTENT_LENGTH) p.contentLength = v;
      else p.pieceLength = v;
    } else if (tag === PE_TOTAL_PIECES) {
      const v = r.u28(end);
      if (v === BAIL) return undefined;
      p.totalPieces = v;
    } else return undefined;
  }
  return p;
}

// The oneof member in r's bytes up to `end`, or undefined.
function request(tag: number, r: Reader, end: number): Req["request"] | undefined {
  let v;
  switch (tag) {
    case PIECES_FINISHED:
      return (v = piecesFinished(r, end)) && { case: "piecesFinished", value: v };
    case PIECE_FINISHED:
      return (v = pieceFinished(r, end)) && { case: "pieceFinished", value: v };
    case DOWNLOAD_PEER_STARTED:
      if (end !== r.pos) return undefined;
      return { case: "downloadPeerStarted", value: { $typeName: S.DownloadPeerStartedRequestSchema.typeName } };
    case PIECE_FAILED:
      return (v = pieceFailed(r, end)) && { case: "pieceFailed", value: v };
    case PEER_FINISHED:
      return (v = peerFinished(r, end)) && { case: "peerFinished", value: v };
    default:
      return undefined;
  }
}

export function decodeAnnouncePeerRequest(bytes: Uint8Array): Req | undefined {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = buf.length;
  const r = new Reader(buf, 0, end);
  const m: Req = { $typeName: S.AnnouncePeerRequestSchema.typeName, hostId: "", taskId: "", peerId: "", request: { case: undefined } };
  let haveRequest = false;
  while (r.pos < end) {
    const tag = r.u28(end);
    if (tag === HOST_ID || tag === TASK_ID || tag === PEER_ID) {
      const s = r.ascii(end);
      if (s === undefined) return undefined;
      if (tag === HOST_ID) m.hostId = s;
      else if (tag === TASK_ID) m.taskId = s;
      else m.peerId = s;
      continue;
    }
    // A second oneof member (fromBinary merges or replaces): its business.
    if (haveRequest || tag === BAIL) return undefined;
    haveRequest = true;
    const e = r.span(end);
    if (e === BAIL) return undefined;
    const req = request(tag, r, e);
    if (!req) return undefined;
    m.request = req;
    r.pos = e;
  }
  return m;
}
