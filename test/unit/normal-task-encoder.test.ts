import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Host } from "../../src/scheduler/resources/host-manager.js";
import { Peer, type PeerState } from "../../src/scheduler/resources/peer-manager.js";
import { Task } from "../../src/scheduler/resources/task-manager.js";
import { encodeNormalTask } from "../../src/protocol/fast/normal-task-encoder.js";
import { normalTask } from "../../src/scheduler/scheduling/responses.js";
import { prng } from "../helpers/prng.js";

// The hand-written encoder must give exactly the bytes protobuf-es gives for
// the same answer: daemons cannot tell which path answered them.

// Empty, ASCII, 2-, 3- and 4-byte characters, a lone surrogate, and one long
// enough for a two-byte length prefix.
const STRINGS = ["", "p1", "peer-0123456789abcdef", "héte", "节点-7", "🚀node", "bad\ud800pair", "x".repeat(200), "10.0.0.1", "::1"];
const STATES: PeerState[] = ["pending", "running", "backToSource", "succeeded", "failed"];
const BIG = [0n, 1n, 127n, 128n, 4n * 2n ** 20n, 2n ** 32n + 5n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n];

test("normal_task encoder: the same bytes as toBinary(normalTask(...))", () => {
  const rnd = prng(11);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  for (let round = 0; round < 500; round++) {
    const task = new Task("t".repeat(64), 0);
    task.contentLength = pick(BIG);
    task.pieceLength = pick(BIG);
    task.totalPieces = pick([0, 1, 127, 128, 20, 4_000_000_000]);
    task.contentLengthKnown = rnd() < 0.5;
    const parents = Array.from({ length: Math.floor(rnd() * 17) }, () => {
      const host = new Host(pick(STRINGS));
      host.ip = pick(STRINGS);
      host.uploadPort = pick([0, 1, 65002, 128, 2 ** 32 - 1]);
      host.type = pick([HostType.UNSPECIFIED, HostType.NORMAL, HostType.SEED]);
      const peer = new Peer(pick(STRINGS), task.id, host.id, 0);
      peer.state = pick(STATES);
      peer.finishedPieces = pick([0, 1, 127, 128, 16_384, 2 ** 32 - 1]);
      return { peer, host };
    });
    const want = toBinary(schedulerv1.AnnouncePeerResponseSchema, normalTask(task, parents));
    const got = encodeNormalTask(task, parents);
    assert.deepEqual(new Uint8Array(got), want, `round ${round}`);
  }
});

test("normal_task encoder: decodes to the answer it encodes", () => {
  const task = new Task("t".repeat(64), 0);
  task.recordFinished(20n * 4n * 2n ** 20n, 4n * 2n ** 20n, 20);
  const host = new Host("h1");
  host.ip = "10.0.0.1";
  host.uploadPort = 65002;
  host.type = HostType.SEED;
  const peer = new Peer("p1", task.id, host.id, 0);
  peer.state = "succeeded";
  peer.finishedPieces = 20;
  const r = fromBinary(schedulerv1.AnnouncePeerResponseSchema, encodeNormalTask(task, [{ peer, host }]));
  assert.equal(r.response.case, "normalTask");
  const v = r.response.value as schedulerv1.NormalTaskResponse;
  assert.deepEqual(
    v.candidateParents.map((c) => [c.peerId, c.hostId, c.ip, c.uploadPort, c.hostType, c.finishedPieces, c.finished]),
    [["p1", "h1", "10.0.0.1", 65002, HostType.SEED, 20, true]],
  );
  assert.deepEqual([v.task?.contentLength, v.task?.pieceLength, v.task?.totalPieces, v.task?.contentLengthKnown], [80n * 2n ** 20n, 4n * 2n ** 20n, 20, true]);
});
