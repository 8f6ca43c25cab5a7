// The simulated daemons' side of AnnouncePeer on the wire, cheaper than
// protobuf-es: the bench client shares the machine's two cores with the
// scheduler it measures, and create() + toBinary() per request and
// fromBinary() per answer were a third of its CPU. The bytes sent are the
// bytes toBinary gives (selfCheck() compares them before a run); answers are
// read only as far as the simulation looks (which kind, which parents).
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { schedulerv1 } from "../src/protocol/index.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];
type Piece = schedulerv1.PieceFinishedRequest;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function vlen(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

class Writer {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
  ) {
    this.pos = start;
  }
  varint(v: number): void {
    while (v >= 128) {
      this.buf[this.pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }
  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
  }
}

// Encodable by hand: every uint64 a safe integer, every string ASCII.
function pieceOk(p: Piece): boolean {
  return p.length <= MAX_SAFE && p.costMicros <= MAX_SAFE && isAscii(p.parentId) && p.number >= 0 && p.crc32 >= 0;
}

function pieceLen(p: Piece): number {
  let n = 0;
  if (p.number !== 0) n += 1 + vlen(p.number);
  if (p.length !== 0n) n += 1 + vlen(Number(p.length));
  if (p.crc32 !== 0) n += 1 + vlen(p.crc32);
  if (p.parentId !== "") n += 1 + vlen(p.parentId.length) + p.parentId.length;
  if (p.costMicros !== 0n) n += 1 + vlen(Number(p.costMicros));
  return n;
}

function writePiece(w: Writer, p: Piece): void {
  if (p.number !== 0) {
    w.varint(0x08);
    w.varint(p.number);
  }
  if (p.length !== 0n) {
    w.varint(0x10);
    w.varint(Number(p.length));
  }
  if (p.crc32 !== 0) {
    w.varint(0x18);
    w.varint(p.crc32);
  }
  if (p.parentId !== "") {
    w.varint(0x22);
    w.varint(p.parentId.length);
    w.ascii(p.parentId);
  }
  if (p.costMicros !== 0n) {
    w.varint(0x28);
    w.varint(Number(p.costMicros));
  }
}

// The gRPC frame (flag, length, message) of the request: `head` is the
// encoded host_id/task_id/peer_id (fields 1-3 come first on the wire), the
// oneof follows. Hand-encoded for piece reports and download_peer_started,
// toBinary for the rest.
export function requestFrame(head: Buffer, request: Req): Buffer {
  let tail: Uint8Array | undefined;
  let field = 0;
  let body = 0;
  if (request.case === "piecesFinished" && request.value.pieces.every(pieceOk)) {
    field = 20;
    for (const p of request.value.pieces) {
      const n = pieceLen(p);
      body += 1 + vlen(n) + n;
    }
  } else if (request.case === "pieceFinished" && pieceOk(request.value)) {
    field = 15;
    body = pieceLen(request.value);
  } else if (request.case === "downloadPeerStarted") {
    field = 11;
  } else {
    tail = toBinary(schedulerv1.AnnouncePeerRequestSchema, create(schedulerv1.AnnouncePeerRequestSchema, { request }));
  }
  const msgLen = head.length + (tail ? tail.length : vlen((field << 3) | 2) + vlen(body) + body);
  const frame = Buffer.allocUnsafe(5 + msgLen);
  frame[0] = 0;
  frame.writeUInt32BE(msgLen, 1);
  head.copy(frame, 5);
  if (tail) {
    frame.set(tail, 5 + head.length);
    return frame;
  }
  const w = new Writer(frame, 5 + head.length);
  w.varint((field << 3) | 2);
  w.varint(body);
  if (request.case === "piecesFinished") {
    for (const p of request.value.pieces) {
      w.varint(0x0a);
      w.varint(pieceLen(p));
      writePiece(w, p);
    }
  } else if (request.case === "pieceFinished") {
    writePiece(w, request.value);
  }
  if (w.pos !== frame.length) throw new Error(`requestFrame: wrote ${w.pos} of ${frame.length} bytes`);
  return frame;
}

export function requestHead(hostId: string, taskId: string, peerId: string): Buffer {
  return Buffer.from(toBinary(schedulerv1.AnnouncePeerRequestSchema, create(schedulerv1.AnnouncePeerRequestSchema, { hostId, taskId, peerId })));
}

export type AnswerCase = NonNullable<schedulerv1.AnnouncePeerResponse["response"]["case"]> | "none";

// What a simulated peer acts on: the kind of answer and, for normal_task,
// the candidate parents' peer ids.
export interface Answer {
  case: AnswerCase;
  parents: string[];
}

const CASES: AnswerCase[] = ["none", "normalTask", "needBackToSource", "emptyTask", "taskFailed", "localHit"];

export function answerOf(r: schedulerv1.AnnouncePeerResponse): Answer {
  const parents = r.response.case === "normalTask" ? r.response.value.candidateParents.map((c) => c.peerId) : [];
  return { case: r.response.case ?? "none", parents };
}

// Reads the oneof's field number and, in normal_task, field 1 (peer_id) of
// each candidate_parents entry; anything unexpected goes to fromBinary.
export function decodeAnswer(b: Buffer): Answer {
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
      const field = Math.floor(tag / 8);
      if (tag % 8 !== 2 || field < 1 || field > 5) throw new Error("unexpected field");
      const end = varint() + pos;
      if (end > b.length) throw new Error("truncated");
      answer = { case: CASES[field]!, parents: [] };
      if (field === 1) {
        while (pos < end) {
          const t = varint();
          const e = varint() + pos;
          if (t === 0x0a) {
            // One CandidateParent: its peer_id only.
            while (pos < e) {
              const ct = varint();
              if (ct % 8 === 2) {
                const se = varint() + pos;
                if (ct === 0x0a) answer.parents.push(b.toString("utf8", pos, se));
                pos = se;
              } else if (ct % 8 === 0) varint();
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
    return answerOf(fromBinary(schedulerv1.AnnouncePeerResponseSchema, b));
  }
}

// The hand-written paths against protobuf-es, on the messages the bench sends.
export function selfCheck(): void {
  const head = requestHead("h12", "f".repeat(64), "p345");
  const piece = (n: number, parentId: string) => create(schedulerv1.PieceFinishedRequestSchema, { number: n, length: 4n << 20n, crc32: 1, parentId, costMicros: BigInt(20_000 + n * 977) });
  const reqs: Req[] = [
    { case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema) },
    { case: "pieceFinished", value: piece(0, "") },
    { case: "pieceFinished", value: piece(19, "p77") },
    { case: "piecesFinished", value: create(schedulerv1.PiecesFinishedRequestSchema, { pieces: Array.from({ length: 64 }, (_, n) => piece(n, n % 3 ? `p${n}` : "")) }) },
    { case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: 3, parentId: "p9", reason: "connection reset" }) },
    { case: "peerFinished", value: create(schedulerv1.PeerFinishedRequestSchema, { contentLength: 80n << 20n, pieceLength: 4n << 20n, totalPieces: 20 }) },
  ];
  for (const request of reqs) {
    const want = toBinary(schedulerv1.AnnouncePeerRequestSchema, create(schedulerv1.AnnouncePeerRequestSchema, { hostId: "h12", taskId: "f".repeat(64), peerId: "p345", request }));
    const got = requestFrame(head, request);
    if (got.readUInt32BE(1) !== want.length || !got.subarray(5).equals(want)) throw new Error(`bench encoder differs from toBinary for ${request.case}`);
  }
  const normal = create(schedulerv1.AnnouncePeerResponseSchema, {
    response: { case: "normalTask", value: { candidateParents: [{ peerId: "p1", hostId: "h1", ip: "10.0.0.1", uploadPort: 65002, finishedPieces: 3 }, { peerId: "p2", finished: true }], task: { totalPieces: 20 } } },
  });
  const got = decodeAnswer(Buffer.from(toBinary(schedulerv1.AnnouncePeerResponseSchema, normal)));
  if (got.case !== "normalTask" || got.parents.join() !== "p1,p2") throw new Error(`bench decoder: ${JSON.stringify(got)}`);
  const back = decodeAnswer(Buffer.from(toBinary(schedulerv1.AnnouncePeerResponseSchema, create(schedulerv1.AnnouncePeerResponseSchema, { response: { case: "needBackToSource", value: { description: "x" } } }))));
  if (back.case !== "needBackToSource") throw new Error(`bench decoder: ${JSON.stringify(back)}`);
}
