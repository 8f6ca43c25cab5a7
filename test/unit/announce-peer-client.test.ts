// The daemon-side AnnouncePeer codec the scheduler benchmark uses: requests
// are the bytes toBinary gives; the answer peek agrees with fromBinary.
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { schedulerv1 as S } from "../../src/protocol/index.js";
import { answerOf, encodeAnnouncePeerHead, encodeAnnouncePeerRequest, peekAnnouncePeerResponse } from "../../src/protocol/fast/announce-peer-client.js";
import { prng } from "../helpers/prng.js";

type Req = S.AnnouncePeerRequest["request"];
const STRINGS = ["", "p1", "peer-0123456789abcdef", "héte", "🚀"];
const U32 = [0, 1, 127, 128, 16_384, 2 ** 32 - 1];
const U64 = [0n, 1n, 128n, 4n << 20n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n];

test("AnnouncePeerRequest encoder: toBinary's bytes, generated decode gives the request back", () => {
  const rnd = prng(21);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const piece = () =>
    create(S.PieceFinishedRequestSchema, { number: pick(U32), length: pick(U64), crc32: pick(U32), parentId: pick(STRINGS), costMicros: pick(U64) });
  const requests: (() => Req)[] = [
    () => ({ case: "downloadPeerStarted", value: create(S.DownloadPeerStartedRequestSchema) }),
    () => ({ case: "pieceFinished", value: piece() }),
    () => ({ case: "piecesFinished", value: create(S.PiecesFinishedRequestSchema, { pieces: Array.from({ length: Math.floor(rnd() * 70) }, piece) }) }),
    () => ({ case: "pieceFailed", value: create(S.PieceFailedRequestSchema, { number: 3, parentId: pick(STRINGS), reason: "connection reset" }) }),
    () => ({ case: "peerFinished", value: create(S.PeerFinishedRequestSchema, { contentLength: pick(U64), pieceLength: 4n << 20n, totalPieces: 20 }) }),
  ];
  for (let round = 0; round < 1000; round++) {
    const ids = { hostId: pick(STRINGS), taskId: "f".repeat(64), peerId: pick(STRINGS) };
    const request = pick(requests)();
    const want = toBinary(S.AnnouncePeerRequestSchema, create(S.AnnouncePeerRequestSchema, { ...ids, request }));
    const got = encodeAnnouncePeerRequest(encodeAnnouncePeerHead(ids.hostId, ids.taskId, ids.peerId), request);
    assert.deepEqual(new Uint8Array(got), want, `round ${round}: ${request.case}`);
    assert.deepEqual(fromBinary(S.AnnouncePeerRequestSchema, got).request, request);
  }
});

test("AnnouncePeerResponse peek: fromBinary's kind and parents", () => {
  const answers: S.AnnouncePeerResponse["response"][] = [
    {
      case: "normalTask",
      value: create(S.NormalTaskResponseSchema, {
        candidateParents: [
          { peerId: "p1", hostId: "h1", ip: "10.0.0.1", uploadPort: 65002, finishedPieces: 3 },
          { peerId: "p2", finished: true },
          { peerId: "héte" },
        ],
        task: { totalPieces: 20 },
      }),
    },
    { case: "normalTask", value: create(S.NormalTaskResponseSchema) },
    { case: "needBackToSource", value: create(S.NeedBackToSourceResponseSchema, { description: "x" }) },
    { case: "emptyTask", value: create(S.EmptyTaskResponseSchema) },
    { case: "taskFailed", value: create(S.TaskFailedResponseSchema, { error: { code: "DF_ERR_SOURCE_STATUS", message: "404" } }) },
    { case: "localHit", value: create(S.LocalHitResponseSchema, { task: { totalPieces: 2 } }) },
    { case: undefined },
  ];
  for (const response of answers) {
    const bytes = Buffer.from(toBinary(S.AnnouncePeerResponseSchema, create(S.AnnouncePeerResponseSchema, { response })));
    assert.deepEqual(peekAnnouncePeerResponse(bytes), answerOf(fromBinary(S.AnnouncePeerResponseSchema, bytes)), String(response.case));
  }
});
