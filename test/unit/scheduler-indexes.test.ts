import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Host } from "../../src/scheduler/resources/host-manager.js";
import { Peer } from "../../src/scheduler/resources/peer-manager.js";
import { PeerPool } from "../../src/scheduler/resources/peer-pool.js";
import { ResourceStore } from "../../src/scheduler/resources/resource-store.js";
import type { Task } from "../../src/scheduler/resources/task-manager.js";
import { SchedulingEngine } from "../../src/scheduler/scheduling/engine.js";
import { isEligibleParent, scoreParent, selectParents } from "../../src/scheduler/scheduling/parent-selector.js";
import { PeerEvents } from "../../src/scheduler/scheduling/peer-events.js";
import { errorDetail } from "../../src/scheduler/scheduling/responses.js";
import { prng } from "../helpers/prng.js";

const taskIdOf = (k: number) => createHash("sha256").update(`index-test-${k}`).digest("hex");

test("peer pool: add, delete (swap with last), positions stay consistent", () => {
  const pool = new PeerPool();
  const peers = Array.from({ length: 20 }, (_, i) => new Peer(`p${i}`, "t", `h${i}`, 0));
  for (const p of peers) pool.add(p);
  pool.add(peers[0]!);
  assert.equal(pool.size, 20);
  const rnd = prng(7);
  const live = new Set(peers);
  for (let k = 0; k < 200; k++) {
    const p = peers[Math.floor(rnd() * peers.length)]!;
    if (rnd() < 0.5) {
      assert.equal(pool.delete(p), live.delete(p));
    } else {
      pool.add(p);
      live.add(p);
    }
    assert.deepEqual(new Set(pool), live);
    assert.equal(pool.size, live.size);
    for (const x of live) assert.ok(pool.has(x));
    assert.equal(new Set(pool.items).size, pool.items.length);
  }
});

// Reference answers by walking every peer of the task, as the scheduler did
// before it kept indexes.
function reference(store: ResourceStore, task: Task, limit: number, live: (id: string) => Host | undefined) {
  const all = [...task.peers];
  return {
    succeeded: new Set(all.filter((p) => p.state === "succeeded")),
    short: new Set(all.filter((p) => p.state === "running" && p.candidates.size < limit)),
    backToSource: new Set(all.filter((p) => p.state === "backToSource").map((p) => p.id)),
    seedPresent: all.some((p) => (p.isActive || p.state === "succeeded") && live(p.hostId)?.isSeed === true),
    hasSucceeded: all.some((p) => p.state === "succeeded" && live(p.hostId) !== undefined),
    hasFeed: (child: Peer) =>
      all.some((p) => p !== child && !child.blocklist.has(p.id) && live(p.hostId) !== undefined && (p.state === "succeeded" || p.state === "backToSource")),
    allIds: new Set(store.taskPeers(task).map((p) => p.id)),
  };
}

test("task indexes match a walk over all peers through random peer and host events", async () => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0", seedWait: 5000 } });
  const limit = config.candidateParentLimit;
  const store = new ResourceStore({ candidateParentLimit: limit });
  let clock = 1_000_000;
  const engine = new SchedulingEngine({ config, logger: createLogger("silent"), store, trigger: async () => undefined, now: () => clock });
  const events = new PeerEvents(engine);
  const rnd = prng(42);
  const pick = <T>(xs: readonly T[]): T | undefined => (xs.length ? xs[Math.floor(rnd() * xs.length)] : undefined);
  const hostMsg = (i: number, seed: boolean) =>
    create(schedulerv1.HostSchema, {
      id: `h${i}`,
      hostname: `h${i}`,
      ip: "10.0.0.1",
      uploadPort: 1,
      apiPort: seed ? 2 : 0,
      type: seed ? HostType.SEED : HostType.NORMAL,
      uploadSlots: 3,
    });
  for (let i = 0; i < 30; i++) store.upsertHost(hostMsg(i, i < 2), 0, clock, config);
  const tasks = [0, 1, 2].map(taskIdOf);
  let seq = 0;
  const piece = (parentId: string) => create(schedulerv1.PieceFinishedRequestSchema, { number: 0, length: 100n, parentId, costMicros: 10n });
  const live = (id: string) => {
    const h = store.hosts.get(id);
    return h && !store.hosts.isExpired(h, clock, config.hostTimeout) ? h : undefined;
  };

  for (let step = 0; step < 3000; step++) {
    const peers = [...store.peers.values()];
    const p = pick(peers);
    const r = rnd();
    if (r < 0.2 || !p) {
      const host = store.hosts.get(`h${Math.floor(rnd() * 30)}`);
      if (host)
        events.register(
          host,
          pick(tasks)!,
          `p${seq++}`,
          create(schedulerv1.RegisterPeerRequestSchema, { download: { url: "http://o/f" }, finishedPieces: 0 }) as never,
          new AsyncQueue(),
        );
    } else if (r < 0.3) events.downloadStarted(p);
    else if (r < 0.4)
      events.backToSourceStarted(
        p,
        create(schedulerv1.BackToSourceStartedRequestSchema, { contentLength: 1000n, pieceLength: 100n, contentLengthKnown: true }),
      );
    else if (r < 0.5) events.pieceFinished(p, piece(pick([...p.candidates.keys()]) ?? ""));
    else if (r < 0.56) {
      const parent = pick([...p.candidates.keys()]);
      if (parent) events.pieceFailed(p, create(schedulerv1.PieceFailedRequestSchema, { parentId: parent }));
    } else if (r < 0.62)
      events.reschedule(p, create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: rnd() < 0.5 ? [...p.candidates.keys()].slice(0, 1) : [] }));
    else if (r < 0.72) events.finished(p, 1000n, 100n, 10);
    else if (r < 0.76) events.failed(p, errorDetail("DF_ERR_INTERNAL", "test"));
    else if (r < 0.82) events.streamClosed(p);
    else if (r < 0.84) {
      const t = store.tasks.get(p.taskId);
      if (t) engine.reevaluate(t);
    } else if (r < 0.86) {
      const h = store.hosts.get(p.hostId);
      if (h) events.removeHost(h);
    } else if (r < 0.88) {
      // A host re-announces, possibly as the other type.
      const i = Math.floor(rnd() * 30);
      store.upsertHost(hostMsg(i, rnd() < 0.3), 0, clock, config);
    } else if (r < 0.9) {
      const host = store.hosts.get(`h${Math.floor(rnd() * 30)}`);
      if (host)
        events.cachedTasks(host, [
          create(schedulerv1.CachedTaskSchema, {
            taskId: pick(tasks)!,
            peerId: rnd() < 0.5 && p ? p.id : `c${seq++}`,
            contentLength: 1000n,
            pieceLength: 100n,
            totalPieces: 10,
          }),
        ]);
    } else if (r < 0.92) {
      // Time passes: some hosts stop being live.
      clock += config.hostTimeout / 4;
    } else if (r < 0.94) {
      for (const h of store.hosts.values()) if (rnd() < 0.7) h.lastSeen = clock;
    } else if (r < 0.96) engine.tick();
    if (step % 100 === 0) await new Promise((res) => setImmediate(res));

    for (const id of tasks) {
      const task = store.tasks.get(id);
      if (!task) continue;
      const ref = reference(store, task, limit, live);
      const where = `step ${step}, task ${id.slice(0, 6)}`;
      assert.deepEqual(new Set(task.succeeded), ref.succeeded, `${where}: succeeded`);
      assert.deepEqual(new Set(task.shortOfParents), ref.short, `${where}: short of parents`);
      assert.deepEqual(task.backToSourcePeers, ref.backToSource, `${where}: back-to-source`);
      assert.equal(engine.seeds.active(task, Number.POSITIVE_INFINITY), ref.seedPresent, `${where}: seed peer present`);
      for (const child of [...task.peers].slice(0, 5)) assert.equal(engine.hasFeed(task, child), ref.hasFeed(child), `${where}: hasFeed(${child.id})`);
      assert.equal(new Set([...task.peers].map((x) => x.id)).size, ref.allIds.size);
      for (const x of task.peers) assert.equal(store.peers.get(x.id), x, `${where}: ${x.id} attached but not in the peer table`);
      void ref.hasSucceeded;
    }
  }
  engine.close();
});

// The selection as it was: check every peer, then sample the eligible ones.
function selectByScan(
  child: Peer,
  peers: Peer[],
  host: (id: string) => Host | undefined,
  totalPieces: number,
  filterLimit: number,
  candidateLimit: number,
): Peer[] {
  const eligible = peers.filter((p) => isEligibleParent(child, p, host(p.hostId)));
  assert.ok(eligible.length <= filterLimit, "reference only without sampling");
  return eligible
    .map((p) => ({ p, s: scoreParent(child, p, host(p.hostId)!, totalPieces) }))
    .sort((a, b) => b.s - a.s)
    .slice(0, candidateLimit)
    .map((x) => x.p);
}

test("parent selection by random draws picks the parents a full scan picks", () => {
  const rnd = prng(3);
  for (let round = 0; round < 300; round++) {
    const hosts = new Map<string, Host>();
    const peers: Peer[] = [];
    const n = 5 + Math.floor(rnd() * 60);
    for (let i = 0; i < n; i++) {
      const h = new Host(`h${i}`);
      h.uploadSlots = 1 + Math.floor(rnd() * 4);
      h.type = rnd() < 0.1 ? HostType.SEED : HostType.NORMAL;
      h.throughput = rnd() * 100;
      for (let c = 0; c < Math.floor(rnd() * 5); c++) h.children.add(`x${c}`);
      hosts.set(h.id, h);
      const p = new Peer(`p${i}`, "t", h.id, 0);
      p.state = pick(["pending", "running", "backToSource", "succeeded", "failed"] as const);
      p.finishedPieces = Math.floor(rnd() * 10);
      p.sourceStarted = rnd() < 0.5;
      peers.push(p);
    }
    const child = peers[0]!;
    for (const p of peers) if (rnd() < 0.1) child.block(p.id);
    const host = (id: string) => hosts.get(id);
    const eligible = peers.filter((p) => isEligibleParent(child, p, host(p.hostId)));
    const filterLimit = 15;
    const got = selectParents({ child, peers, host, totalPieces: 10, filterParentLimit: filterLimit, candidateParentLimit: 4, random: rnd });
    if (eligible.length <= filterLimit) {
      // Same parents, same score order (peers of equal score may swap).
      const want = selectByScan(child, peers, host, 10, filterLimit, 4);
      const score = (p: Peer) => scoreParent(child, p, host(p.hostId)!, 10);
      assert.deepEqual(got.map(score), want.map(score), `round ${round}`);
      const cut = want.length ? score(want[want.length - 1]!) : 0;
      assert.deepEqual(new Set(got.filter((p) => score(p) > cut)), new Set(want.filter((p) => score(p) > cut)), `round ${round}`);
    } else {
      // A sample: eligible peers only, best first, as many as asked for.
      assert.equal(got.length, 4);
      for (const p of got) assert.ok(eligible.includes(p));
    }
  }
  function pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(rnd() * xs.length)]!;
  }
});

test("parent selection samples every eligible peer alike, however big the task", () => {
  const rnd = prng(11);
  const hosts = new Map<string, Host>();
  const peers: Peer[] = [];
  for (let i = 0; i < 1000; i++) {
    const h = new Host(`h${i}`);
    h.uploadSlots = 100;
    hosts.set(h.id, h);
    const p = new Peer(`p${i}`, "t", h.id, 0);
    // Every third peer eligible (the rest failed).
    p.state = i % 3 === 0 ? "running" : "failed";
    peers.push(p);
  }
  const child = new Peer("child", "t", "hc", 0);
  const seen = new Map<string, number>();
  const rounds = 2000;
  for (let k = 0; k < rounds; k++) {
    const got = selectParents({ child, peers, host: (id) => hosts.get(id), totalPieces: 10, filterParentLimit: 15, candidateParentLimit: 15, random: rnd });
    assert.equal(got.length, 15);
    for (const p of got) {
      assert.equal(p.state, "running");
      seen.set(p.id, (seen.get(p.id) ?? 0) + 1);
    }
  }
  // 334 eligible peers, 15 drawn per round: each about 90 times.
  const counts = [...seen.values()];
  assert.equal(seen.size, 334);
  const mean = (rounds * 15) / 334;
  for (const c of counts) assert.ok(c > mean * 0.5 && c < mean * 1.6, `count ${c} vs mean ${mean.toFixed(0)}`);
});
