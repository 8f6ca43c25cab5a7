import { test } from "node:test";
import assert from "node:assert/strict";
import { HostType } from "../../src/protocol/index.js";
import { Host } from "../../src/scheduler/resources/host-manager.js";
import { Peer, type PeerState } from "../../src/scheduler/resources/peer-manager.js";
import { isEligibleParent, selectParents } from "../../src/scheduler/scheduling/parent-selector.js";
import { pickSeedHost } from "../../src/scheduler/scheduling/seed-trigger.js";

const TASK = "a".repeat(64);

function mkHost(id: string, opts: { seed?: boolean; slots?: number } = {}): Host {
  const h = new Host(id);
  h.ip = "127.0.0.1";
  h.uploadPort = 1;
  h.type = opts.seed ? HostType.SEED : HostType.NORMAL;
  h.uploadSlots = opts.slots ?? 10;
  return h;
}

function mkPeer(id: string, hostId: string, state: PeerState = "running", finishedPieces = 0): Peer {
  const p = new Peer(id, TASK, hostId, 0);
  p.state = state;
  p.finishedPieces = finishedPieces;
  if (state === "backToSource") p.sourceStarted = true;
  return p;
}

function world(hosts: Host[]) {
  const m = new Map(hosts.map((h) => [h.id, h]));
  return (id: string) => m.get(id);
}

const limits = { filterParentLimit: 15, candidateParentLimit: 4, totalPieces: 10 };

test("excludes itself, same host, blocklisted, failed and unknown-host peers", () => {
  const hosts = [mkHost("hc"), mkHost("h1"), mkHost("h2"), mkHost("h3"), mkHost("h4")];
  const child = mkPeer("child", "hc", "pending");
  const sameHost = mkPeer("same", "hc", "succeeded", 10);
  const blocked = mkPeer("blocked", "h1", "succeeded", 10);
  const failed = mkPeer("failed", "h2", "failed", 5);
  const orphan = mkPeer("orphan", "gone", "succeeded", 10);
  const good = mkPeer("good", "h3", "running", 3);
  const idle = mkPeer("idle", "h4", "pending", 0);
  child.block("blocked");
  const out = selectParents({ child, peers: [child, sameHost, blocked, failed, orphan, good, idle], host: world(hosts), ...limits });
  assert.deepEqual(
    out.map((p) => p.id),
    ["good"],
  );
});

test("back-to-source peers count only once they started; running peers with no pieces are kept", () => {
  const hosts = [mkHost("hc"), mkHost("h1"), mkHost("h2")];
  const child = mkPeer("child", "hc", "pending");
  const told = mkPeer("told", "h1", "backToSource");
  told.sourceStarted = false;
  const fresh = mkPeer("fresh", "h2", "running", 0);
  assert.equal(isEligibleParent(child, told, hosts[1]), false);
  told.sourceStarted = true;
  assert.equal(isEligibleParent(child, told, hosts[1]), true);
  assert.equal(isEligibleParent(child, fresh, hosts[2]), true);
});

test("honours upload slots (children assigned to the host) but not the child's own slot", () => {
  const full = mkHost("full", { slots: 2 });
  full.children.add("x").add("y");
  const roomy = mkHost("roomy", { slots: 2 });
  roomy.children.add("child").add("x");
  const child = mkPeer("child", "hc");
  const hosts = [mkHost("hc"), full, roomy];
  const out = selectParents({
    child,
    peers: [mkPeer("pf", "full", "succeeded", 10), mkPeer("pr", "roomy", "succeeded", 10)],
    host: world(hosts),
    ...limits,
  });
  assert.deepEqual(
    out.map((p) => p.id),
    ["pr"],
  );
});

test("prefers seeds and finished peers over partial ones; penalises failing parents", () => {
  const hosts = [mkHost("hc"), mkHost("seed", { seed: true }), mkHost("h1"), mkHost("h2"), mkHost("h3")];
  const child = mkPeer("child", "hc", "pending");
  const peers = [
    mkPeer("partial", "h1", "running", 2),
    mkPeer("done", "h2", "succeeded", 10),
    mkPeer("seedp", "seed", "succeeded", 10),
    mkPeer("half", "h3", "running", 5),
  ];
  const out = selectParents({ child, peers, host: world(hosts), ...limits });
  assert.deepEqual(
    out.map((p) => p.id),
    ["seedp", "done", "half", "partial"],
  );
  child.countParentFailure("seedp");
  const again = selectParents({ child, peers, host: world(hosts), ...limits });
  assert.equal(again[0]!.id, "done");
});

test("prefers less loaded hosts at equal progress", () => {
  const busy = mkHost("busy", { slots: 10 });
  for (let i = 0; i < 8; i++) busy.children.add(`c${i}`);
  const hosts = [mkHost("hc"), busy, mkHost("idle", { slots: 10 })];
  const child = mkPeer("child", "hc");
  const out = selectParents({ child, peers: [mkPeer("b", "busy", "succeeded"), mkPeer("i", "idle", "succeeded")], host: world(hosts), ...limits });
  assert.deepEqual(
    out.map((p) => p.id),
    ["i", "b"],
  );
});

test("returns at most candidateParentLimit and samples at most filterParentLimit", () => {
  const hosts = [mkHost("hc")];
  const peers: Peer[] = [];
  for (let i = 0; i < 50; i++) {
    hosts.push(mkHost(`h${i}`));
    peers.push(mkPeer(`p${i}`, `h${i}`, "running", i % 10));
  }
  const child = mkPeer("child", "hc");
  assert.equal(selectParents({ child, peers, host: world(hosts), ...limits }).length, 4);
  assert.equal(selectParents({ child, peers, host: world(hosts), ...limits, candidateParentLimit: 100, filterParentLimit: 7 }).length, 7);
});

test("rendezvous hashing picks a stable seed and moves only the departed seed's tasks", () => {
  const seeds = [mkHost("s1", { seed: true }), mkHost("s2", { seed: true }), mkHost("s3", { seed: true })];
  const tasks = Array.from({ length: 60 }, (_, i) => i.toString(16).padStart(64, "0"));
  const before = tasks.map((t) => pickSeedHost(t, seeds)!.id);
  assert.deepEqual(
    tasks.map((t) => pickSeedHost(t, [...seeds].reverse())!.id),
    before,
  );
  assert.ok(new Set(before).size > 1);
  const after = tasks.map((t) => pickSeedHost(t, seeds.slice(0, 2))!.id);
  tasks.forEach((_, i) => {
    if (before[i] !== "s3") assert.equal(after[i], before[i]);
  });
  assert.equal(pickSeedHost(TASK, []), undefined);
});
