import { test, after } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createRpcServer, daemonv1, HostType, schedulerv1 } from "../../src/protocol/index.js";
import type { Scheduler } from "../../src/scheduler/index.js";
import type { DelayFn } from "../../src/scheduler/scheduling/seed-trigger.js";
import { LEN, newTaskId, PL, TestPeer, until } from "../helpers/announce-peer.js";
import { startTlsScheduler, type SchedClient } from "../helpers/scheduler-tls.js";

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function startScheduler(flags: Record<string, unknown> = {}, delay?: DelayFn): Promise<{ sched: Scheduler; client: SchedClient }> {
  const s = await startTlsScheduler(undefined, cleanups, flags, delay ? { delay } : {});
  return { sched: s.sched, client: await s.client("peer", "test") };
}

async function announce(client: SchedClient, id: string, opts: { seed?: boolean; apiPort?: number; slots?: number } = {}): Promise<boolean> {
  const res = await client.announceHost({
    host: {
      id,
      hostname: id,
      ip: "127.0.0.1",
      uploadPort: 4000,
      apiPort: opts.apiPort ?? 0,
      type: opts.seed ? HostType.SEED : HostType.NORMAL,
      uploadSlots: opts.slots ?? 0,
    },
    intervalSeconds: 0,
  });
  return res.newHost;
}

// A peer's message has been handled (each stream's messages are handled in
// order, but streams race one another).
const sourceStarted = (sched: Scheduler, peerId: string) => until(() => sched.peerSnapshot(peerId)?.sourceStarted === true);
const ids = (n: schedulerv1.NormalTaskResponse) => n.candidateParents.map((c) => c.peerId).sort();

test("no seed: first peer goes to the origin, a later peer gets it as parent", { timeout: 15_000 }, async () => {
  const { sched, client } = await startScheduler();
  await announce(client, "ha");
  await announce(client, "hb");
  const task = newTaskId();
  const a = new TestPeer(client, cleanups, "ha", task, "pa");
  a.register();
  await a.expect("needBackToSource");
  a.startSource();
  await sourceStarted(sched, "pa");
  const b = new TestPeer(client, cleanups, "hb", task, "pb");
  b.register();
  const n = await b.expect("normalTask");
  assert.deepEqual(ids(n), ["pa"]);
  assert.equal(n.candidateParents[0]!.hostId, "ha");
  assert.equal(n.task?.contentLength, LEN);
  assert.equal(n.task?.totalPieces, 10);
  const stat = await client.statTask({ taskId: task });
  assert.equal(stat.peerCount, 2);
  assert.equal(stat.backToSourcePeerCount, 1);
});

test("back-to-source limit: the second peer waits, then gets the first as parent", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler({ backToSourceLimit: 1 });
  await announce(client, "ha");
  await announce(client, "hb");
  const task = newTaskId();
  const a = new TestPeer(client, cleanups, "ha", task, "pa");
  a.register();
  await a.expect("needBackToSource");
  const b = new TestPeer(client, cleanups, "hb", task, "pb");
  b.register();
  await b.expectSilence(300);
  a.startSource();
  assert.deepEqual(ids(await b.expect("normalTask")), ["pa"]);
});

test("waiting with back-to-source disabled fails with DF_ERR_NO_PARENT after seedWait", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler({ seedWait: 200 });
  await announce(client, "ha");
  const a = new TestPeer(client, cleanups, "ha", newTaskId(), "pa");
  a.register({ disableBackToSource: true });
  const f = await a.expect("taskFailed", 3000);
  assert.equal(f.error?.code, "DF_ERR_NO_PARENT");
});

async function fakeSeedDaemon() {
  const calls: daemonv1.TriggerTaskRequest[] = [];
  const server = await createRpcServer("127.0.0.1:0", (router) =>
    router.service(daemonv1.DaemonService, {
      triggerTask: (req) => {
        calls.push(req);
        return create(daemonv1.TriggerTaskResponseSchema, { taskId: req.taskId });
      },
    }),
  );
  cleanups.push(() => server.close());
  return { calls, port: server.address.port };
}

test("seed-first cold start: the seed is triggered, fetches from the origin and becomes the parent", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler({ coldStart: "seed" });
  const seed = await fakeSeedDaemon();
  await announce(client, "seed", { seed: true, apiPort: seed.port });
  await announce(client, "hn");
  await announce(client, "hm");
  const task = newTaskId();
  const n = new TestPeer(client, cleanups, "hn", task, "pn");
  n.register({ url: "http://origin.test/big" });
  await until(() => seed.calls.length === 1);
  assert.equal(seed.calls[0]!.taskId, task);
  assert.equal(seed.calls[0]!.download?.url, "http://origin.test/big");
  assert.equal(seed.calls[0]!.download?.headers.authorization, "secret");
  await n.expectSilence(100);

  const s = new TestPeer(client, cleanups, "seed", task, "ps");
  s.register({ url: "http://origin.test/big" });
  await s.expect("needBackToSource");
  s.startSource();
  const got = await n.expect("normalTask");
  assert.deepEqual(ids(got), ["ps"]);
  assert.equal(got.candidateParents[0]!.hostType, HostType.SEED);

  // A sibling learns about the seed and the downloading peer; the first peer
  // is told about the sibling once it has a piece.
  const m = new TestPeer(client, cleanups, "hm", task, "pm");
  m.register({ url: "http://origin.test/big" });
  assert.deepEqual(ids(await m.expect("normalTask")), ["pn", "ps"]);
  const update = await n.expect("normalTask");
  assert.deepEqual(ids(update), ["pm", "ps"]);
  assert.equal(seed.calls.length, 1);
});

test("peer-first cold start: the first peer fetches from the origin; a second peer mid-download brings the seed, which copies from the peers", {
  timeout: 15_000,
}, async () => {
  const { client } = await startScheduler({ coldStart: "peer" });
  const seed = await fakeSeedDaemon();
  await announce(client, "seed", { seed: true, apiPort: seed.port });
  await announce(client, "hn");
  await announce(client, "hm");
  const task = newTaskId();
  const n = new TestPeer(client, cleanups, "hn", task, "pn");
  n.register({ url: "http://origin.test/big" });
  await n.expect("needBackToSource");
  n.startSource();
  await n.expectSilence(100);
  assert.equal(seed.calls.length, 0, "a lone cold request must not wait for or trigger a seed");

  // A second requester while the first is still fetching: it gets the first
  // as parent, and the seed is triggered to join.
  const m = new TestPeer(client, cleanups, "hm", task, "pm");
  m.register({ url: "http://origin.test/big" });
  assert.deepEqual(ids(await m.expect("normalTask")), ["pn"]);
  await until(() => seed.calls.length === 1);
  assert.equal(seed.calls[0]!.download?.headers.authorization, "secret");
  const s = new TestPeer(client, cleanups, "seed", task, "ps");
  s.register({ url: "http://origin.test/big" });
  assert.ok(ids(await s.expect("normalTask")).includes("pn"), "the seed copies from the peer instead of the origin");
});

test("peer-first cold start: the seed copies a task seedCopyDelay after its first peer finishes", { timeout: 15_000 }, async () => {
  // The delayed copy's timer is the test's: it fires when the test says so.
  const delayed: { fn: () => void; ms: number }[] = [];
  const { sched, client } = await startScheduler({ seedCopyDelay: 300, coldStart: "peer" }, (fn, ms) => delayed.push({ fn, ms }));
  const seed = await fakeSeedDaemon();
  await announce(client, "seed", { seed: true, apiPort: seed.port });
  await announce(client, "hn");
  const task = newTaskId();
  const n = new TestPeer(client, cleanups, "hn", task, "pn");
  n.register();
  await n.expect("needBackToSource");
  n.startSource();
  n.finish();
  await until(() => sched.peerSnapshot("pn")?.state === "succeeded");
  assert.deepEqual(
    delayed.map((d) => d.ms),
    [300],
    "the copy waits seedCopyDelay",
  );
  assert.equal(seed.calls.length, 0, "the seed must not copy before seedCopyDelay");
  delayed[0]!.fn();
  await until(() => seed.calls.length === 1);
  const s = new TestPeer(client, cleanups, "seed", task, "ps");
  s.register();
  assert.deepEqual(ids(await s.expect("normalTask")), ["pn"]);
});

test("origin failure at the seed fails waiting peers with the origin status", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler({ coldStart: "seed" });
  const seed = await fakeSeedDaemon();
  await announce(client, "seed", { seed: true, apiPort: seed.port });
  await announce(client, "hn");
  const task = newTaskId();
  const n = new TestPeer(client, cleanups, "hn", task, "pn");
  n.register();
  await until(() => seed.calls.length === 1);
  const s = new TestPeer(client, cleanups, "seed", task, "ps");
  s.register();
  await s.expect("needBackToSource");
  s.send({
    case: "backToSourceFailed",
    value: create(schedulerv1.BackToSourceFailedRequestSchema, {
      error: { code: "DF_ERR_SOURCE_STATUS", message: "origin said 404", source: { statusCode: 404, statusText: "Not Found" } },
    }),
  });
  const f = await n.expect("taskFailed");
  assert.equal(f.error?.code, "DF_ERR_SOURCE_STATUS");
  assert.equal(f.error?.source?.statusCode, 404);
  // Peers arriving right after are told at once.
  const late = new TestPeer(client, cleanups, "hn", task, "pl");
  late.register();
  assert.equal((await late.expect("taskFailed")).error?.source?.statusCode, 404);
});

test("a peer whose stream closes before finishing disappears from candidates; a finished one stays", { timeout: 15_000 }, async () => {
  const { sched, client } = await startScheduler();
  for (const h of ["ha", "hb", "hc", "hd", "he"]) await announce(client, h);
  const task = newTaskId();
  const a = new TestPeer(client, cleanups, "ha", task, "pa");
  a.register();
  await a.expect("needBackToSource");
  a.startSource();
  await sourceStarted(sched, "pa");
  const b = new TestPeer(client, cleanups, "hb", task, "pb");
  b.register();
  assert.deepEqual(ids(await b.expect("normalTask")), ["pa"]);
  const c = new TestPeer(client, cleanups, "hc", task, "pc");
  c.register();
  assert.deepEqual(ids(await c.expect("normalTask")), ["pa", "pb"]);
  await b.expect("normalTask"); // b learns about c

  b.close();
  // c is rescheduled without b.
  assert.deepEqual(ids(await c.expect("normalTask")), ["pa"]);
  const d = new TestPeer(client, cleanups, "hd", task, "pd");
  d.register();
  assert.deepEqual(ids(await d.expect("normalTask")), ["pa", "pc"]);

  a.finish();
  a.close();
  // Handled in order: finished, then the closed stream, after which pa stays.
  await until(() => sched.peerSnapshot("pa")?.streamOpen === false);
  assert.equal(sched.peerSnapshot("pa")?.state, "succeeded");
  const e = new TestPeer(client, cleanups, "he", task, "pe");
  e.register();
  const got = await e.expect("normalTask");
  assert.ok(ids(got).includes("pa"));
  assert.ok(got.candidateParents.find((p) => p.peerId === "pa")!.finished);
});

test("a host that stops announcing is removed with its peers after hostTimeout", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler({ hostTimeout: 300 });
  assert.equal(await announce(client, "hx"), true);
  assert.equal(await announce(client, "hx"), false);
  const task = newTaskId();
  const x = new TestPeer(client, cleanups, "hx", task, "px");
  x.register();
  await x.expect("needBackToSource");
  x.startSource();
  const err = await x.failure(3000);
  assert.equal(err.code, Code.FailedPrecondition);
  await assert.rejects(client.statTask({ taskId: task }), (e: unknown) => ConnectError.from(e).code === Code.NotFound);
  assert.equal(await announce(client, "hx"), true);
  await announce(client, "hy");
  const y = new TestPeer(client, cleanups, "hy", task, "py");
  y.register();
  await y.expect("needBackToSource");
});

test("rejects peers of unannounced hosts and malformed requests", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler();
  const p = new TestPeer(client, cleanups, "nobody", newTaskId(), "p1");
  p.register();
  const e1 = await p.failure();
  assert.equal(e1.code, Code.FailedPrecondition);
  assert.match(e1.rawMessage, /not announced/);

  await announce(client, "ha");
  const q = new TestPeer(client, cleanups, "ha", "NOT-A-TASK", "p2");
  q.register();
  assert.equal((await q.failure()).code, Code.InvalidArgument);

  const r = new TestPeer(client, cleanups, "ha", newTaskId(), "p3");
  r.send({ case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema, {}) });
  assert.equal((await r.failure()).code, Code.InvalidArgument);
});

test("cached tasks make finished parents; leaving hosts take their peers along", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler();
  await announce(client, "hc");
  await announce(client, "hn");
  const task = newTaskId();
  await client.announceCachedTasks({ hostId: "hc", tasks: [{ taskId: task, peerId: "cached", contentLength: 0n, pieceLength: 0n, totalPieces: 0 }] });
  const n = new TestPeer(client, cleanups, "hn", task, "pn");
  n.register();
  await n.expect("emptyTask");

  const t2 = newTaskId();
  await client.announceCachedTasks({ hostId: "hc", tasks: [{ taskId: t2, peerId: "cached2", contentLength: LEN, pieceLength: PL, totalPieces: 10 }] });
  const m = new TestPeer(client, cleanups, "hn", t2, "pm");
  m.register();
  const got = await m.expect("normalTask");
  assert.deepEqual(ids(got), ["cached2"]);
  assert.equal(got.candidateParents[0]!.finished, true);
  assert.equal(got.task?.totalPieces, 10);
  const stat = await client.statTask({ taskId: t2 });
  assert.equal(stat.finishedPeerCount, 1);
  await client.leaveHost({ hostId: "hc" });
  assert.equal((await client.statTask({ taskId: t2 })).finishedPeerCount, 0);
});

test("a failed seed trigger sends the waiting peer to the origin at once, without re-triggering", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler({ seedWait: 10_000, coldStart: "seed" });
  const calls: string[] = [];
  const server = await createRpcServer("127.0.0.1:0", (router) =>
    router.service(daemonv1.DaemonService, {
      triggerTask: (req) => {
        calls.push(req.taskId);
        throw new ConnectError("disk full", Code.ResourceExhausted);
      },
    }),
  );
  cleanups.push(() => server.close());
  await announce(client, "seed", { seed: true, apiPort: server.address.port });
  await announce(client, "ha");
  await announce(client, "hb");
  const task = newTaskId();
  const a = new TestPeer(client, cleanups, "ha", task, "pa");
  a.register();
  await a.expect("needBackToSource", 3000);
  assert.equal(calls.length, 1);
  const b = new TestPeer(client, cleanups, "hb", task, "pb");
  b.register();
  await b.expect("needBackToSource");
  assert.equal(calls.length, 1);
});

test("parents that keep failing are dropped; reschedules end at the origin", { timeout: 15_000 }, async () => {
  const { sched, client } = await startScheduler({ retryLimit: 1 });
  for (const h of ["ha", "hb", "hc"]) await announce(client, h);
  const task = newTaskId();
  const a = new TestPeer(client, cleanups, "ha", task, "pa");
  a.register();
  await a.expect("needBackToSource");
  a.startSource();
  const c = new TestPeer(client, cleanups, "hc", task, "pc");
  await sourceStarted(sched, "pa");
  c.register();
  assert.deepEqual(ids(await c.expect("normalTask")), ["pa"]);
  c.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: ["pa"], description: "slow" }) });
  await c.expect("needBackToSource");
  c.startSource();
  await sourceStarted(sched, "pc");

  const b = new TestPeer(client, cleanups, "hb", task, "pb");
  b.register();
  assert.deepEqual(ids(await b.expect("normalTask")), ["pa", "pc"]);
  const fail = () =>
    b.send({ case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: 1, parentId: "pa", reason: "reset", temporary: false }) });
  b.send({ case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: 1, parentId: "pa", reason: "busy", temporary: true }) });
  fail();
  await b.expectSilence(150);
  fail();
  assert.deepEqual(ids(await b.expect("normalTask")), ["pc"]);
  b.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: [], description: "again" }) });
  assert.deepEqual(ids(await b.expect("normalTask")), ["pc"]);
  b.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: ["pc"], description: "again" }) });
  await b.expect("needBackToSource");
});

test("a peer that registers holding every piece gets a local hit, one that holds some gets parents", { timeout: 15_000 }, async () => {
  const { client } = await startScheduler();
  await announce(client, "hc");
  await announce(client, "hn");
  const task = newTaskId();
  await client.announceCachedTasks({ hostId: "hc", tasks: [{ taskId: task, peerId: "cached", contentLength: LEN, pieceLength: PL, totalPieces: 10 }] });
  const full = new TestPeer(client, cleanups, "hn", task, "full");
  full.register({ finishedPieces: 10 });
  const hit = await full.expect("localHit");
  assert.equal(hit.task?.totalPieces, 10);
  const partial = new TestPeer(client, cleanups, "hn", task, "partial");
  partial.register({ finishedPieces: 4 });
  const normal = await partial.expect("normalTask");
  assert.deepEqual(
    normal.candidateParents.map((p) => p.peerId),
    ["cached"],
  );
});
