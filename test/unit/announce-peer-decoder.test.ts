import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { decodeAnnouncePeerRequest, schedulerv1 } from "../../src/protocol/index.js";
import { prng } from "../helpers/prng.js";

// The hand-written decoder either gives exactly what fromBinary gives or
// declines (undefined); it never gives a different answer.

type Req = schedulerv1.AnnouncePeerRequest["request"];
const S = schedulerv1;
const STRINGS = ["", "p1", "peer-0123456789abcdef", "h".repeat(200), "héte", "🚀"];
const U32 = [0, 1, 127, 128, 16_383, 16_384, 2 ** 28 - 1, 2 ** 28, 2 ** 32 - 1];
const U64 = [0n, 1n, 127n, 128n, 4n * 2n ** 20n, 2n ** 49n - 1n, 2n ** 49n, 2n ** 64n - 1n];

function sample(rnd: () => number): schedulerv1.AnnouncePeerRequest {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const piece = () =>
    create(S.PieceFinishedRequestSchema, { number: pick(U32), length: pick(U64), crc32: pick(U32), parentId: pick(STRINGS), costMicros: pick(U64) });
  const requests: (() => Req)[] = [
    () => ({ case: "pieceFinished", value: piece() }),
    () => ({ case: "piecesFinished", value: create(S.PiecesFinishedRequestSchema, { pieces: Array.from({ length: Math.floor(rnd() * 5) }, piece) }) }),
    () => ({ case: "downloadPeerStarted", value: create(S.DownloadPeerStartedRequestSchema) }),
    () => ({
      case: "pieceFailed",
      value: create(S.PieceFailedRequestSchema, { number: pick(U32), parentId: pick(STRINGS), reason: pick(STRINGS), temporary: rnd() < 0.5 }),
    }),
    () => ({ case: "peerFinished", value: create(S.PeerFinishedRequestSchema, { contentLength: pick(U64), pieceLength: pick(U64), totalPieces: pick(U32) }) }),
    () => ({ case: "registerPeer", value: create(S.RegisterPeerRequestSchema, { download: { url: "http://o/f" }, finishedPieces: pick(U32) }) }),
    () => ({ case: "reschedule", value: create(S.RescheduleRequestSchema, { blocklistParentIds: ["a"], description: "d" }) }),
    () => ({ case: undefined }),
  ];
  return create(S.AnnouncePeerRequestSchema, { hostId: pick(STRINGS), taskId: pick(STRINGS), peerId: pick(STRINGS), request: pick(requests)() });
}

// fromBinary's answer, or its error message.
function reference(bytes: Uint8Array): schedulerv1.AnnouncePeerRequest | string {
  try {
    return fromBinary(S.AnnouncePeerRequestSchema, bytes);
  } catch (e) {
    return (e as Error).message;
  }
}

test("AnnouncePeerRequest decoder: fromBinary's answer on the hot messages, or none", () => {
  const rnd = prng(5);
  let decoded = 0;
  for (let round = 0; round < 3000; round++) {
    const bytes = toBinary(S.AnnouncePeerRequestSchema, sample(rnd));
    const got = decodeAnnouncePeerRequest(Buffer.from(bytes));
    if (got === undefined) continue;
    decoded++;
    assert.deepEqual(got, reference(bytes), `round ${round}`);
  }
  assert.ok(decoded > 200, `decoded ${decoded}`);
});

test("AnnouncePeerRequest decoder: takes what daemons send during a download", () => {
  const head = { hostId: "host-1", taskId: "a".repeat(64), peerId: "peer-2-ab12" };
  const piece = { number: 7, length: 4n * 2n ** 20n, crc32: 0x1234567, parentId: "peer-1-cd34", costMicros: 40_000n };
  const typical: Req[] = [
    { case: "downloadPeerStarted", value: create(S.DownloadPeerStartedRequestSchema) },
    { case: "pieceFinished", value: create(S.PieceFinishedRequestSchema, piece) },
    { case: "piecesFinished", value: create(S.PiecesFinishedRequestSchema, { pieces: [piece, { ...piece, number: 8, parentId: "" }] }) },
    { case: "pieceFailed", value: create(S.PieceFailedRequestSchema, { number: 3, parentId: "peer-1-cd34", reason: "connection reset", temporary: true }) },
    { case: "peerFinished", value: create(S.PeerFinishedRequestSchema, { contentLength: 80n * 2n ** 20n, pieceLength: 4n * 2n ** 20n, totalPieces: 20 }) },
  ];
  for (const request of typical) {
    const bytes = toBinary(S.AnnouncePeerRequestSchema, create(S.AnnouncePeerRequestSchema, { ...head, request }));
    assert.deepEqual(decodeAnnouncePeerRequest(Buffer.from(bytes)), fromBinary(S.AnnouncePeerRequestSchema, bytes), request.case);
  }
});

test("AnnouncePeerRequest decoder: corrupted and concatenated bytes never give a different answer", () => {
  const rnd = prng(9);
  for (let round = 0; round < 20000; round++) {
    const a = toBinary(S.AnnouncePeerRequestSchema, sample(rnd));
    let bytes: Uint8Array;
    const how = Math.floor(rnd() * 4);
    if (how === 0) {
      // Two messages back to back: fields repeat, oneof members collide.
      bytes = Buffer.concat([a, toBinary(S.AnnouncePeerRequestSchema, sample(rnd))]);
    } else if (how === 1) {
      bytes = a.subarray(0, Math.floor(rnd() * a.length));
    } else {
      bytes = Uint8Array.from(a);
      for (let k = 0; k < 1 + Math.floor(rnd() * 3) && bytes.length > 0; k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
    }
    const got = decodeAnnouncePeerRequest(Buffer.from(bytes));
    if (got === undefined) continue;
    assert.deepEqual(got, reference(bytes), `round ${round}: ${Buffer.from(bytes).toString("hex")}`);
  }
});

test("AnnouncePeerRequest decoder: a non-Buffer Uint8Array view", () => {
  const msg = create(S.AnnouncePeerRequestSchema, { hostId: "h", taskId: "t", peerId: "p", request: { case: "downloadPeerStarted", value: {} } });
  const inner = toBinary(S.AnnouncePeerRequestSchema, msg);
  const padded = new Uint8Array(inner.length + 3);
  padded.set(inner, 3);
  assert.deepEqual(decodeAnnouncePeerRequest(padded.subarray(3)), fromBinary(S.AnnouncePeerRequestSchema, inner));
});
