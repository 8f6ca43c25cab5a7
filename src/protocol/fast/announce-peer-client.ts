import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as S from "../gen/damselfly/scheduler/v1/scheduler_pb.js";
import { ANNOUNCE_PEER_REQUEST, ANNOUNCE_PEER_RESPONSE, CANDIDATE_PARENT, NORMAL_TASK, PIECE_FINISHED, PIECES_FINISHED } from "./scheduler-tags.js";
import { LEN, u64, varintLength, VARINT, Writer } from "./wire.js";

// The daemon side of AnnouncePeer by hand, for a client that simulates
// thousands of daemons on the machine it measures (bench/scheduler-scale.ts):
// create() + toBinary() per request and fromBinary() per answer cost it
// several times more CPU (docs/decisions/wire-codecs.md). Requests are the
// bytes toBinary gives; answers are read only as far as such a client looks
// (which kind, which parents). Tags come from the generated descriptors;
// test/unit/announce-peer-client.test.ts holds both to protobuf-es.

type Req = S.AnnouncePeerRequest["request"];
type Piece = S.PieceFinishedRequest;

const R = ANNOUNCE_PEER_REQUEST.tag;
const PF = PIECE_FINISHED.tag;
const PIECES = PIECES_FINISHED.tag.pieces;

const isAscii = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
};

// Encodable by hand: every uint64 a safe integer, every string ASCII.
const pieceOk = (p: Piece): boolean =>
  p.number >= 0 && p.crc32 >= 0 && typeof u64(p.length) === "number" && typeof u64(p.costMicros) === "number" && isAscii(p.parentId);

function pieceLength(p: Piece): number {
  let n = 0;
  if (p.number !== 0) n += varintLength(PF.number) + varintLength(p.number);
  if (p.length !== 0n) n += varintLength(PF.length) + varintLength(Number(p.length));
  if (p.crc32 !== 0) n += varintLength(PF.crc32) + varintLength(p.crc32);
  if (p.parentId !== "") n += varintLength(PF.parentId) + varintLength(p.parentId.length) + p.parentId.length;
  if (p.costMicros !== 0n) n += varintLength(PF.costMicros) + varintLength(Number(p.costMicros));
  return n;
}

function writePiece(w: Writer, p: Piece): void {
  if (p.number !== 0) {
    w.varint(PF.number);
    w.varint(p.number);
  }
  if (p.length !== 0n) {
    w.varint(PF.length);
    w.varint(Number(p.length));
  }
  if (p.crc32 !== 0) {
    w.varint(PF.crc32);
    w.varint(p.crc32);
  }
  if (p.parentId !== "") w.string(PF.parentId, p.parentId, p.parentId.length);
  if (p.costMicros !== 0n) {
    w.varint(PF.costMicros);
    w.varint(Number(p.costMicros));
  }
}

// host_id, task_id and peer_id encoded once per stream: they come first on
// the wire, the request's oneof member follows (encodeAnnouncePeerRequest).
export function encodeAnnouncePeerHead(hostId: string, taskId: string, peerId: string): Buffer {
  return Buffer.from(toBinary(S.AnnouncePeerRequestSchema, create(S.AnnouncePeerRequestSchema, { hostId, taskId, peerId })));
}

// One AnnouncePeerRequest: by hand for piece reports and
// download_peer_started, toBinary for the rest.
export function encodeAnnouncePeerRequest(head: Buffer, request: Req): Buffer {
  let tag = 0;
  let body = 0;
  if (request.case === "piecesFinished" && request.value.pieces.every(pieceOk)) {
    tag = R.piecesFinished;
    for (const p of request.value.pieces) {
      const n = pieceLength(p);
      body += varintLength(PIECES) + varintLength(n) + n;
    }
  } else if (request.case === "pieceFinished" && pieceOk(request.value)) {
    tag = R.pieceFinished;
    body = pieceLength(request.value);
  } else if (request.case === "downloadPeerStarted") {
    tag = R.downloadPeerStarted;
  } else {
    const tail = toBinary(S.AnnouncePeerRequestSchema, create(S.AnnouncePeerRequestSchema, { request }));
    return Buffer.concat([head, tail]);
  }
  const w = new Writer(Buffer.allocUnsafe(head.length + varintLength(tag) + varintLength(body) + body), head.length);
  head.copy(w.buf, 0);
  w.varint(tag);
  w.varint(body);
  if (request.case === "piecesFinished") {
    for (const p of request.value.pieces) {
      w.varint(PIECES);
      w.varint(pieceLength(p));
      writePiece(w, p);
    }
  } else if (request.case === "pieceFinished") {
    writePiece(w, request.value);
  }
  if (w.pos !== w.buf.length) throw new Error(`AnnouncePeerRequest encoder: wrote ${w.pos} of ${w.buf.length} bytes`);
  return w.buf;
}

export type AnswerCase = NonNullable<S.AnnouncePeerResponse["response"]["case"]> | "none";

// What a simulated daemon acts on: the kind of answer and, for normal_task,
// the candidate parents' peer ids.
export interface Answer {
  case: AnswerCase;
  parents: string[];
}

// The answer's oneof members by tag.
const ANSWER_CASES = new Map<number, AnswerCase>(ANNOUNCE_PEER_RESPONSE.fields.map((k) => [ANNOUNCE_PEER_RESPONSE.tag[k], k]));
const NORMAL = ANNOUNCE_PEER_RESPONSE.tag.normalTask;
const CANDIDATES = NORMAL_TASK.tag.candidateParents;
const CANDIDATE_PEER_ID = CANDIDATE_PARENT.tag.peerId;

export function answerOf(r: S.AnnouncePeerResponse): Answer {
  const parents = r.response.case === "normalTask" ? r.response.value.candidateParents.map((c) => c.peerId) : [];
  return { case: r.response.case ?? "none", parents };
}

// Reads the oneof member and, in normal_task, each candidate's peer_id;
// anything unexpected goes to fromBinary.
export function peekAnnouncePeerResponse(b: Buffer): Answer {
  let pos = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const x = b[pos++];
      if (x === undefined) throw new Error("truncated");
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 128;
    }
  };
  try {
    let answer: Answer = { case: "none", parents: [] };
    while (pos < b.length) {
      const tag = varint();
      const kind = ANSWER_CASES.get(tag);
      if (kind === undefined) throw new Error("unexpected field");
      const end = varint() + pos;
      if (end > b.length) throw new Error("truncated");
      answer = { case: kind, parents: [] };
      if (tag === NORMAL) {
        while (pos < end) {
          const t = varint();
          const e = varint() + pos;
          if (t === CANDIDATES) {
            // One CandidateParent: its peer_id only.
            while (pos < e) {
              const ct = varint();
              if (ct % 8 === LEN) {
                const se = varint() + pos;
                if (ct === CANDIDATE_PEER_ID) answer.parents.push(b.toString("utf8", pos, se));
                pos = se;
              } else if (ct % 8 === VARINT) varint();
              else throw new Error("unexpected wire type");
            }
          }
          pos = e;
        }
      }
      pos = end;
    }
    return answer;
  } catch {
    return answerOf(fromBinary(S.AnnouncePeerResponseSchema, b));
  }
}
