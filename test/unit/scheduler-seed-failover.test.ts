// The scheduler's side of seed failover: a seed whose trigger fails is
// replaced by the next seed of the ring at once (not by sending peers to the
// origin), and the seed taking over a task peers hold in part gets those
// peers as parents, then the origin for what none of them holds.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { schedulerv1 } from "../../src/protocol/index.js";
import type { Host } from "../../src/scheduler/resources/host-manager.js";
import { announceTestHost, newTaskId, PL, TestPeer, until } from "../helpers/announce-peer.js";
import { startTlsScheduler } from "../helpers/scheduler-tls.js";

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const piece = (n: number) => ({
  case: "pieceFinished" as const,
  value: create(schedulerv1.PieceFinishedRequestSchema, { number: n, length: PL, crc32: 1, parentId: "", costMicros: 0n }),
});

test("a seed whose trigger fails: the next seed of the ring is triggered at once, the peer waits for it", { timeout: 15_000 }, async () => {
  const triggered: string[] = [];
  const { client } = await startTlsScheduler(
    undefined,
    cleanups,
    { coldStart: "seed" },
    {
      trigger: async (host: Host) => {
        triggered.push(host.id);
        if (triggered.length === 1) throw new Error("connect ECONNREFUSED");
      },
    },
  ).then(async (s) => ({ client: await s.client("peer", "test") }));
  await announceTestHost(client, "seed-a", true);
  await announceTestHost(client, "seed-b", true);
  await announceTestHost(client, "hn");
  const n = new TestPeer(client, cleanups, "hn", newTaskId(), "pn");
  n.register();
  await until(() => triggered.length === 2);
  assert.notEqual(triggered[1], triggered[0], "the second trigger should go to the other seed");
  // Neither sent to the origin nor failed: it waits for the seed.
  await n.expectSilence(200);
});

test("the seed taking over a task peers hold in part: those peers as parents, then the origin for the rest while it keeps them", {
  timeout: 15_000,
}, async () => {
  const triggered: string[] = [];
  const started = await startTlsScheduler(
    undefined,
    cleanups,
    { coldStart: "seed" },
    {
      trigger: async (host: Host) => {
        triggered.push(host.id);
      },
    },
  );
  const client = await started.client("peer", "test");
  await announceTestHost(client, "seed-a", true);
  await announceTestHost(client, "seed-b", true);
  await announceTestHost(client, "hn");
  const task = newTaskId();
  const n = new TestPeer(client, cleanups, "hn", task, "pn");
  n.register();
  await until(() => triggered.length === 1);
  const first = triggered[0]!;
  const second = first === "seed-a" ? "seed-b" : "seed-a";
  const s1 = new TestPeer(client, cleanups, first, task, "ps1");
  s1.register();
  await s1.expect("needBackToSource");
  s1.startSource();
  assert.deepEqual(
    (await n.expect("normalTask")).candidateParents.map((c) => c.peerId),
    ["ps1"],
  );
  for (let i = 0; i < 3; i++) n.send(piece(i));
  // The fetching seed's host leaves: the next seed is triggered for the task.
  await client.leaveHost({ hostId: first });
  await until(() => triggered.length === 2);
  assert.equal(triggered[1], second);
  const s2 = new TestPeer(client, cleanups, second, task, "ps2");
  s2.register();
  const takeOver = await s2.expect("normalTask");
  assert.deepEqual(
    takeOver.candidateParents.map((c) => c.peerId),
    ["pn"],
  );
  s2.send({ case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema) });
  await s2.expectSilence(100);
  // Its first piece from the peers: it knows what they hold, and fetches the
  // rest from the origin while it keeps taking theirs.
  s2.send(piece(0));
  const bts = await s2.expect("needBackToSource");
  assert.equal(bts.keepParents, true);
});

test("a swarm coming back to a scheduler that lost it: its first peer waits for the others instead of going to the origin", {
  timeout: 15_000,
}, async () => {
  const { client } = await startTlsScheduler(undefined, cleanups, {}, {}).then(async (s) => ({ client: await s.client("peer", "test") }));
  await announceTestHost(client, "ha");
  await announceTestHost(client, "hb");
  const task = newTaskId();
  // Both hold pieces (their downloads moved here); no seed host exists.
  const a = new TestPeer(client, cleanups, "ha", task, "pa");
  a.register({ finishedPieces: 3 });
  await a.expectSilence(300);
  const b = new TestPeer(client, cleanups, "hb", task, "pb");
  b.register({ finishedPieces: 2 });
  assert.deepEqual(
    (await b.expect("normalTask")).candidateParents.map((c) => c.peerId),
    ["pa"],
  );
  assert.deepEqual(
    (await a.expect("normalTask")).candidateParents.map((c) => c.peerId),
    ["pb"],
  );
  // A fresh task's first peer (nothing held) still goes to the origin at once.
  const c = new TestPeer(client, cleanups, "ha", newTaskId(), "pc");
  c.register();
  await c.expect("needBackToSource");
});
