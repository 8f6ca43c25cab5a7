// What the scheduler grants, trusts and bounds (issue 19): signed grants for
// the peers it sends to the origin, failure reports only from them, task
// geometry bounded and fixed, caps per registrant, a clamped announce
// interval. Each attack is a test that fails without the defence.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HostType, schedulerv1 } from "../../src/protocol/index.js";
import { decodeGrant, verifyGrant } from "../../src/protocol/trust.js";
import { ResourceStore } from "../../src/scheduler/resources/resource-store.js";
import { create } from "@bufbuild/protobuf";
import type { Pki } from "../helpers/pki.js";
import { fileScope, codeOf, hostMsg, identityOf, LEN, newTaskId, PL, startTlsScheduler, TestPeer, until, type SchedClient } from "../helpers/scheduler-tls.js";

const { cleanups, pki: pkiReady } = fileScope("df-sched-zt-");

const announce = async (c: SchedClient, host: schedulerv1.Host, intervalSeconds = 0) => (await c.announceHost({ host, intervalSeconds })).newHost;

// A scheduler whose seed triggers are recorded, not sent.
async function withSeedTrigger(pki: Pki | undefined, flags: Record<string, unknown> = {}) {
  const triggers: string[] = [];
  const s = await startTlsScheduler(pki, cleanups, { coldStart: "seed", ...flags }, { trigger: async (_h, _d, taskId) => void triggers.push(taskId) });
  return { ...s, triggers };
}

test("grants: the peer sent to the origin gets a grant the cluster CA verifies, naming its certificate (seed and coldStart=peer)", {
  timeout: 20_000,
}, async () => {
  const pki = await pkiReady;
  const verifier = identityOf(await pki.issue("peer", "verifier"));
  const s = await withSeedTrigger(pki);
  const seedFiles = await pki.issue("seed-peer", "g-seed");
  const seed = await s.client("seed-peer", "g-seed");
  const node = await s.client("peer", "g-node");
  await announce(seed, hostMsg("h-g-seed", "g-seed", { seed: true, apiPort: 1 }));
  await announce(node, hostMsg("h-g-node", "g-node"));
  const task = newTaskId();
  const n = new TestPeer(node, cleanups, "h-g-node", task, "p-g-node");
  n.register();
  await until(() => s.triggers.includes(task));
  // The triggered seed announces its download like any peer.
  const sp = new TestPeer(seed, cleanups, "h-g-seed", task, "p-g-seed");
  sp.register();
  const grant = decodeGrant((await sp.expect("needBackToSource")).grant);
  verifyGrant(verifier, grant, task);
  assert.equal(grant.fetcher, identityOf(seedFiles).current().leaf.fingerprint256);
  assert.equal(grant.peerId, "p-g-seed");
  assert.throws(() => verifyGrant(verifier, grant, newTaskId()), /another task/);

  // coldStart=peer: the first requester fetches, with its own grant.
  const p = await startTlsScheduler(pki, cleanups, { coldStart: "peer" });
  const nodeFiles = await pki.issue("peer", "g-first");
  const first = await p.client("peer", "g-first");
  await announce(first, hostMsg("h-g-first", "g-first"));
  const t2 = newTaskId();
  const fp = new TestPeer(first, cleanups, "h-g-first", t2, "p-g-first");
  fp.register();
  const g2 = decodeGrant((await fp.expect("needBackToSource")).grant);
  verifyGrant(verifier, g2, t2);
  assert.equal(g2.fetcher, identityOf(nodeFiles).current().leaf.fingerprint256);
});

// The attack: any registrant says "404" for a URL and every waiting peer
// fails. Only a peer the scheduler sent to the origin may fail others.
for (const tls of [true, false]) {
  test(`fake 404: a registrant not sent to the origin cannot fail the task for others (${tls ? "TLS" : "no TLS"})`, { timeout: 20_000 }, async () => {
    const pki = tls ? await pkiReady : undefined;
    const s = await withSeedTrigger(pki);
    const seed = await s.client("seed-peer", "f-seed");
    const node = await s.client("peer", "f-node");
    const evil = await s.client("peer", "f-evil");
    await announce(seed, hostMsg("h-f-seed", "f-seed", { seed: true, apiPort: 1 }));
    await announce(node, hostMsg("h-f-node", "f-node"));
    await announce(evil, hostMsg("h-f-evil", "f-evil"));
    const task = newTaskId();
    const n = new TestPeer(node, cleanups, "h-f-node", task, "p-f-node");
    n.register();
    await until(() => s.triggers.includes(task));
    const e = new TestPeer(evil, cleanups, "h-f-evil", task, "p-f-evil");
    e.register();
    e.startSource();
    e.sourceFailed(404);
    await until(() => s.sched.peerSnapshot("p-f-evil")?.state === "failed");
    // The real fetcher arrives and fetches.
    const sp = new TestPeer(seed, cleanups, "h-f-seed", task, "p-f-seed");
    sp.register();
    await sp.expect("needBackToSource");
    sp.startSource();
    // The waiting peer is never failed: it gets a parent (or the origin).
    for (;;) {
      const r = (await n.next()).response;
      assert.notEqual(r.case, "taskFailed", "a waiting peer was failed by a fake 404");
      if (r.case === "needBackToSource") break;
      if (r.case === "normalTask" && r.value.candidateParents.some((c) => c.peerId === "p-f-seed")) break;
    }
    const late = new TestPeer(node, cleanups, "h-f-node", task, "p-f-late");
    late.register();
    assert.equal((await late.next()).response.case, "normalTask");
    assert.notEqual((await node.statTask({ taskId: task })).state, "failed");
  });
}

test("geometry: out of bounds is refused before it is recorded", { timeout: 20_000 }, async () => {
  const pki = await pkiReady;
  const s = await startTlsScheduler(pki, cleanups, { "limits.maxContentLength": 64 * 1024 * 1024 });
  const c = await s.client("peer", "geo");
  await announce(c, hostMsg("h-geo", "geo"));
  const bad = [
    [LEN, 100n, 0],
    [LEN, 128n * 1024n * 1024n, 0],
    [65n * 1024n * 1024n, PL, 0],
    [LEN, PL, 11],
  ] as const;
  for (const [contentLength, pieceLength, totalPieces] of bad) {
    const p = new TestPeer(c, cleanups, "h-geo", newTaskId(), `p-geo-${contentLength}-${pieceLength}-${totalPieces}`);
    p.register();
    await p.expect("needBackToSource");
    if (totalPieces === 0) p.startSource(contentLength, pieceLength);
    else p.finish(contentLength, pieceLength, totalPieces);
    assert.equal(await p.error(), "DF_ERR_GEOMETRY_INVALID", `${contentLength}/${pieceLength}/${totalPieces}`);
  }
  const cached = (pieceLength: bigint) => ({ taskId: newTaskId(), peerId: `c-${pieceLength}`, contentLength: LEN, pieceLength, totalPieces: 10 });
  assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h-geo", tasks: [cached(PL), cached(100n)] })), "DF_ERR_GEOMETRY_INVALID");
  assert.equal(s.sched.peerSnapshot(`c-${PL}`), undefined, "nothing of a refused call is taken");
});

test("geometry: no peer changes a task's geometry once set; the granted fetcher's replaces an earlier liar's", { timeout: 20_000 }, async () => {
  const pki = await pkiReady;
  const s = await withSeedTrigger(pki);
  const seed = await s.client("seed-peer", "gm-seed");
  const node = await s.client("peer", "gm-node");
  const evil = await s.client("peer", "gm-evil");
  await announce(seed, hostMsg("h-gm-seed", "gm-seed", { seed: true, apiPort: 1 }));
  await announce(node, hostMsg("h-gm-node", "gm-node"));
  await announce(evil, hostMsg("h-gm-evil", "gm-evil"));
  const task = newTaskId();
  // The liar speaks first: it was never sent to the origin.
  const e = new TestPeer(evil, cleanups, "h-gm-evil", task, "p-gm-evil");
  e.register();
  await until(() => s.triggers.includes(task));
  e.startSource(3n * LEN, PL);
  await until(() => s.sched.peerSnapshot("p-gm-evil")?.sourceStarted === true);
  const sp = new TestPeer(seed, cleanups, "h-gm-seed", task, "p-gm-seed");
  sp.register();
  await sp.expect("needBackToSource");
  sp.startSource(LEN, PL);
  await until(() => s.sched.peerSnapshot("p-gm-seed")?.sourceStarted === true);
  // Now fixed: the liar's finish and anyone else's other length are refused.
  e.finish(3n * LEN, PL);
  assert.equal(await e.error(), "DF_ERR_GEOMETRY_INVALID");
  const n = new TestPeer(node, cleanups, "h-gm-node", task, "p-gm-node");
  n.register();
  const info = (await n.expect("normalTask")).task;
  assert.equal(info?.contentLength, LEN);
  assert.equal(info?.pieceLength, PL);
  n.finish(2n * LEN, PL);
  assert.equal(await n.error(), "DF_ERR_GEOMETRY_INVALID");
  const late = new TestPeer(node, cleanups, "h-gm-node", task, "p-gm-late");
  late.register();
  assert.equal((await late.expect("normalTask")).task?.contentLength, LEN);
});

test("caps per registrant: hosts, tasks and peers answer DF_ERR_LIMIT_EXCEEDED; other registrants are unaffected", { timeout: 20_000 }, async () => {
  const pki = await pkiReady;
  const s = await startTlsScheduler(pki, cleanups, {
    "limits.hostsPerRegistrant": 2,
    "limits.tasksPerRegistrant": 2,
    "limits.peersPerRegistrant": 3,
  });
  const c = await s.client("peer", "cap");
  const other = await s.client("peer", "cap-other");
  assert.equal(await announce(c, hostMsg("h-cap-1", "cap")), true);
  assert.equal(await announce(c, hostMsg("h-cap-2", "cap")), true);
  assert.equal(await codeOf(c.announceHost({ host: hostMsg("h-cap-3", "cap"), intervalSeconds: 0 })), "DF_ERR_LIMIT_EXCEEDED");
  assert.equal(await announce(c, hostMsg("h-cap-2", "cap")), false, "a known host keeps announcing");
  assert.equal(await announce(other, hostMsg("h-cap-other", "cap-other")), true);
  await c.leaveHost({ hostId: "h-cap-2" });
  assert.equal(await announce(c, hostMsg("h-cap-3", "cap")), true);

  const [t1, t2, t3] = [newTaskId(), newTaskId(), newTaskId()];
  const peer = async (task: string, id: string) => {
    const p = new TestPeer(c, cleanups, "h-cap-1", task, id);
    p.register();
    return p;
  };
  await (await peer(t1, "cap-p1")).next();
  await (await peer(t2, "cap-p2")).next();
  assert.equal(await (await peer(t3, "cap-p3")).error(), "DF_ERR_LIMIT_EXCEEDED", "a third task");
  await (await peer(t1, "cap-p4")).next();
  assert.equal(await (await peer(t2, "cap-p5")).error(), "DF_ERR_LIMIT_EXCEEDED", "a fourth peer");
  const cached = { taskId: t1, peerId: "cap-c1", contentLength: LEN, pieceLength: PL, totalPieces: 10 };
  assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h-cap-3", tasks: [cached] })), "DF_ERR_LIMIT_EXCEEDED");
  // Someone else's tasks and peers are theirs.
  const o = new TestPeer(other, cleanups, "h-cap-other", t3, "cap-o1");
  o.register();
  await o.expect("needBackToSource");
});

test("the announce interval is clamped: a host that declares years still expires", { timeout: 20_000 }, async () => {
  const store = new ResourceStore();
  const defaults = { normalUploadSlots: 4, seedUploadSlots: 8, limits: { maxAnnounceInterval: 60_000 } };
  const msg = create(schedulerv1.HostSchema, { id: "h", ip: "127.0.0.1", type: HostType.NORMAL });
  const { host } = store.upsertHost(msg, 1_000_000_000, 0, defaults);
  assert.equal(host.intervalMs, 60_000);
  assert.ok(store.hosts.isExpired(host, 3 * 60_000 + 1, 30_000));

  const pki = await pkiReady;
  const s = await startTlsScheduler(pki, cleanups, { hostTimeout: 100, "limits.maxAnnounceInterval": 100 });
  const c = await s.client("peer", "years");
  await announce(c, hostMsg("h-years", "years"), 1_000_000_000);
  const taskId = newTaskId();
  await c.announceCachedTasks({ hostId: "h-years", tasks: [{ taskId, peerId: "p-years", contentLength: LEN, pieceLength: PL, totalPieces: 10 }] });
  await until(async () => (await c.listTaskPeers({ taskId })).peers.length === 0);
});
