import { test, after } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { createLogger } from "../../src/common/logger.js";
import { createRpcServer, HostType, schedulerv1, type RpcServer } from "../../src/protocol/index.js";
import { PieceReportBatcher } from "../../src/peer/download/piece-report-batcher.js";
import { SchedulerLink } from "../../src/peer/download/scheduler-link.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];

const TASK = "b".repeat(64);
// Handlers of a session whose answers the test does not look at.
const NO_ANSWERS = {
  register: () => ({ case: "registerPeer" as const, value: create(schedulerv1.RegisterPeerRequestSchema, { download: { url: "http://origin.test/f" } }) }),
  onResponse: () => undefined,
  onDetached: () => undefined,
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Every one of `n` announce streams reached the server and ended.
async function allEnded(ended: Promise<void>[], n: number): Promise<void> {
  for (let i = 0; ended.length < n; i++) {
    if (i > 500) throw new Error(`only ${ended.length} of ${n} announce streams arrived`);
    await sleep(10);
  }
  await Promise.all(ended);
}
const piece = (number: number): Req => ({
  case: "pieceFinished",
  value: create(schedulerv1.PieceFinishedRequestSchema, { number, length: 100n, parentId: "p1", costMicros: 10n }),
});
const finished: Req = {
  case: "peerFinished",
  value: create(schedulerv1.PeerFinishedRequestSchema, { contentLength: 1000n, pieceLength: 100n, totalPieces: 10 }),
};
const failedPiece: Req = { case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: 9, parentId: "p1", reason: "reset" }) };

// "piece 3", "pieces 4,5", or the message case.
function describe(r: Req): string {
  if (r.case === "pieceFinished") return `piece ${r.value.number}`;
  if (r.case === "piecesFinished") return `pieces ${r.value.pieces.map((p) => p.number).join(",")}`;
  return r.case ?? "none";
}

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test("batcher: the first piece at once, then pieces coalesced within the window, in order", (t) => {
  // The window runs on mocked timers: the test moves time, no sleep races it.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const out: string[] = [];
  const b = new PieceReportBatcher((r) => out.push(describe(r)), { windowMs: 30, maxPieces: 64 });
  b.send(piece(0));
  // The first piece makes the peer a parent: it does not wait for the window.
  assert.deepEqual(out, ["piece 0"]);
  b.send(piece(1));
  b.send(piece(2));
  b.send(piece(3));
  b.send(piece(4));
  t.mock.timers.tick(29);
  assert.deepEqual(out, ["piece 0"]);
  t.mock.timers.tick(1);
  assert.deepEqual(out, ["piece 0", "pieces 1,2,3,4"]);
  b.send(piece(5));
  t.mock.timers.tick(30);
  // A lone piece goes as a plain piece_finished.
  assert.deepEqual(out, ["piece 0", "pieces 1,2,3,4", "piece 5"]);
  b.close();
});

test("batcher: any other message flushes the pieces first; maxPieces flushes at once", () => {
  const out: string[] = [];
  const b = new PieceReportBatcher((r) => out.push(describe(r)), { windowMs: 60_000, maxPieces: 3 });
  b.send(piece(0));
  b.send(piece(1));
  b.send(piece(2));
  b.send(failedPiece);
  b.send(piece(3));
  b.send(piece(4));
  b.send(piece(5));
  b.send(piece(6));
  b.send(piece(7));
  b.send(finished);
  assert.deepEqual(out, ["piece 0", "pieces 1,2", "pieceFailed", "pieces 3,4,5", "pieces 6,7", "peerFinished"]);
  b.close();
});

test("batcher: close flushes what is held and drops later sends", () => {
  const out: string[] = [];
  const b = new PieceReportBatcher((r) => out.push(describe(r)), { windowMs: 60_000, maxPieces: 64 });
  b.send(piece(0));
  b.send(piece(1));
  b.send(piece(2));
  b.close();
  b.send(piece(3));
  b.send(finished);
  assert.deepEqual(out, ["piece 0", "pieces 1,2"]);
});

// A scheduler that records what arrives on announce streams.
async function recordingScheduler(batched: boolean): Promise<{ server: RpcServer; streams: string[][]; ended: Promise<void>[] }> {
  const streams: string[][] = [];
  const ended: Promise<void>[] = [];
  const server = await createRpcServer("127.0.0.1:0", (router) =>
    router.service(schedulerv1.SchedulerService, {
      announceHost: () => create(schedulerv1.AnnounceHostResponseSchema, { newHost: false, batchedPieceReports: batched }),
      leaveHost: () => create(schedulerv1.LeaveHostResponseSchema, {}),
      announceCachedTasks: () => create(schedulerv1.AnnounceCachedTasksResponseSchema, {}),
      statTask: () => create(schedulerv1.StatTaskResponseSchema, {}),
      async *announcePeer(reqs) {
        const got: string[] = [];
        streams.push(got);
        const out = new AsyncQueue<schedulerv1.AnnouncePeerResponse>();
        ended.push(
          (async () => {
            for await (const r of reqs) got.push(describe(r.request));
            out.close();
          })(),
        );
        yield* out;
      },
    }),
  );
  cleanups.push(() => server.close());
  return { server, streams, ended };
}

async function openLink(server: RpcServer): Promise<SchedulerLink> {
  const link = new SchedulerLink({
    addresses: [`127.0.0.1:${server.address.port}`],
    host: create(schedulerv1.HostSchema, { id: "h1", hostname: "h1", ip: "127.0.0.1", uploadPort: 1, type: HostType.NORMAL }),
    logger: createLogger("silent"),
    connectTimeoutMs: 2_000,
    intervalMs: 60_000,
    cachedTasks: () => [],
    pieceBatch: { windowMs: 60_000, maxPieces: 64 },
  });
  await link.start();
  cleanups.push(() => link.close());
  return link;
}

test("scheduler link: batches pieces on the wire, peer_finished after the last piece, flush on close", { timeout: 10_000 }, async () => {
  const { server, streams, ended } = await recordingScheduler(true);
  const link = await openLink(server);
  const s = await link.open(TASK, "peer-1", NO_ANSWERS);
  assert.ok(s);
  s.send({ case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema) });
  for (let n = 0; n < 5; n++) s.send(piece(n));
  s.send(failedPiece);
  for (let n = 5; n < 10; n++) s.send(piece(n));
  s.send(finished);
  // Pieces held in a window when the session closes still go out.
  const s2 = await link.open(TASK, "peer-2", NO_ANSWERS);
  assert.ok(s2);
  for (let n = 0; n < 4; n++) s2.send(piece(n));
  s.close();
  s2.close();
  await allEnded(ended, 2);
  assert.deepEqual(streams[0], ["registerPeer", "downloadPeerStarted", "piece 0", "pieces 1,2,3,4", "pieceFailed", "pieces 5,6,7,8,9", "peerFinished"]);
  assert.deepEqual(streams[1], ["registerPeer", "piece 0", "pieces 1,2,3"]);
});

test("scheduler link: one message per piece to a scheduler without batched reports", { timeout: 10_000 }, async () => {
  const { server, streams, ended } = await recordingScheduler(false);
  const link = await openLink(server);
  const s = await link.open(TASK, "peer-1", NO_ANSWERS);
  assert.ok(s);
  for (let n = 0; n < 3; n++) s.send(piece(n));
  s.send(finished);
  s.close();
  await allEnded(ended, 1);
  assert.deepEqual(streams[0], ["registerPeer", "piece 0", "piece 1", "piece 2", "peerFinished"]);
});
