import * as S from "../gen/damselfly/scheduler/v1/scheduler_pb.js";
import { ANNOUNCE_PEER_REQUEST, PEER_FINISHED, PIECE_FAILED, PIECE_FINISHED, PIECES_FINISHED } from "./scheduler-tags.js";
import { BAIL, Reader } from "./wire.js";

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

const R = ANNOUNCE_PEER_REQUEST.tag;
const PF = PIECE_FINISHED.tag;
const PIECES = PIECES_FINISHED.tag.pieces;
const PX = PIECE_FAILED.tag;
const PE = PEER_FINISHED.tag;

function pieceFinished(r: Reader, end: number): Piece | undefined {
  const p: Piece = { $typeName: S.PieceFinishedRequestSchema.typeName, number: 0, length: 0n, crc32: 0, parentId: "", costMicros: 0n };
  while (r.pos < end) {
    const tag = r.u28(end);
    if (tag === PF.number || tag === PF.crc32) {
      const v = r.u28(end);
      if (v === BAIL) return undefined;
      if (tag === PF.number) p.number = v;
      else p.crc32 = v;
    } else if (tag === PF.length || tag === PF.costMicros) {
      const v = r.u49(end);
      if (v === undefined) return undefined;
      if (tag === PF.length) p.length = v;
      else p.costMicros = v;
    } else if (tag === PF.parentId) {
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
    if (tag === PX.number) {
      const v = r.u28(end);
      if (v === BAIL) return undefined;
      p.number = v;
    } else if (tag === PX.parentId || tag === PX.reason) {
      const v = r.ascii(end);
      if (v === undefined) return undefined;
      if (tag === PX.parentId) p.parentId = v;
      else p.reason = v;
    } else if (tag === PX.temporary) {
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
    if (tag === PE.contentLength || tag === PE.pieceLength) {
      const v = r.u49(end);
      if (v === undefined) return undefined;
      if (tag === PE.contentLength) p.contentLength = v;
      else p.pieceLength = v;
    } else if (tag === PE.totalPieces) {
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
    case R.piecesFinished:
      return (v = piecesFinished(r, end)) && { case: "piecesFinished", value: v };
    case R.pieceFinished:
      return (v = pieceFinished(r, end)) && { case: "pieceFinished", value: v };
    case R.downloadPeerStarted:
      if (end !== r.pos) return undefined;
      return { case: "downloadPeerStarted", value: { $typeName: S.DownloadPeerStartedRequestSchema.typeName } };
    case R.pieceFailed:
      return (v = pieceFailed(r, end)) && { case: "pieceFailed", value: v };
    case R.peerFinished:
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
    if (tag === R.hostId || tag === R.taskId || tag === R.peerId) {
      const s = r.ascii(end);
      if (s === undefined) return undefined;
      if (tag === R.hostId) m.hostId = s;
      else if (tag === R.taskId) m.taskId = s;
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
