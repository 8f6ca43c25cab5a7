import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { HostType, schedulerv1 } from "../../src/protocol/index.js";
import { DaemonClients } from "../../src/scheduler/daemon-clients.js";
import { Peer, type PeerIndex } from "../../src/scheduler/resources/peer-manager.js";
import {
  PEER_EVENTS,
  PEER_STATES,
  PEER_TRANSITIONS,
  eventTo,
  peerTransition,
  type PeerEvent,
  type PeerState,
} from "../../src/scheduler/resources/peer-state.js";
import { ResourceStore } from "../../src/scheduler/resources/resource-store.js";
import { SchedulingEngine } from "../../src/scheduler/scheduling/engine.js";

// A peer in `state`, reached from pending by events of the table (the
// shortest way), counting index notifications.
function peerIn(state: PeerState): { peer: Peer; changes: () => number } {
  const peer = new Peer("p", "t", "h", 0);
  let n = 0;
  const index: PeerIndex = { peerChanged: () => void n++ };
  const path = pathTo(state);
  assert.ok(path, `${state} is reachable from pending`);
  for (const e of path) assert.equal(peer.apply(e), true);
  assert.equal(peer.state, state);
  peer.index = index;
  return { peer, changes: () => n };
}

function pathTo(target: PeerState): PeerEvent[] | undefined {
  const seen = new Map<PeerState, PeerEvent[]>([["pending", []]]);
  const queue: PeerState[] = ["pending"];
  while (queue.length > 0) {
    const s = queue.shift()!;
    if (s === target) return seen.get(s);
    for (const e of PEER_EVENTS) {
      const to = PEER_TRANSITIONS[s][e];
      if (to !== null && !seen.has(to)) {
        seen.set(to, [...seen.get(s)!, e]);
        queue.push(to);
      }
    }
  }
  return undefined;
}

test("peer state table: every state x event has an answer, and Peer.apply follows it", () => {
  assert.deepEqual(Object.keys(PEER_TRANSITIONS).sort(), [...PEER_STATES].sort());
  for (const from of PEER_STATES) {
    assert.deepEqual(Object.keys(PEER_TRANSITIONS[from]).sort(), [...PEER_EVENTS].sort(), from);
    for (const event of PEER_EVENTS) {
      const to = peerTransition(from, event);
      const { peer, changes } = peerIn(from);
      assert.equal(peer.apply(event), to !== null, `${from} --${event}-->`);
      assert.equal(peer.state, to ?? from, `${from} --${event}--> ${to}`);
      // The task's indexes hear of a change, and only of a change.
      assert.equal(changes(), to !== null && to !== from ? 1 : 0, `${from} --${event}--> ${to}: index notified`);
    }
  }
});

test("peer state table: the lifecycle the scheduler had before the table", () => {
  const expect: Record<PeerState, Record<PeerEvent, PeerState | null>> = {
    // download_peer_started moves only a pending peer; parents move a pending
    // or back-to-source peer; the origin and the end states are reachable
    // from anywhere (a peer may speak again after an end state).
    pending: { started: "running", parents: "running", source: "backToSource", finished: "succeeded", failed: "failed" },
    running: { started: "running", parents: "running", source: "backToSource", finished: "succeeded", failed: "failed" },
    backToSource: { started: "backToSource", parents: "running", source: "backToSource", finished: "succeeded", failed: "failed" },
    succeeded: { started: null, parents: null, source: "backToSource", finished: "succeeded", failed: "failed" },
    failed: { started: null, parents: null, source: "backToSource", finished: "succeeded", failed: "failed" },
  };
  assert.deepEqual(JSON.parse(JSON.stringify(PEER_TRANSITIONS)), expect);
  // Every state is reachable; the table is frozen.
  for (const s of PEER_STATES) assert.ok(pathTo(s));
  assert.ok(Object.isFrozen(PEER_TRANSITIONS) && Object.isFrozen(PEER_TRANSITIONS.pending));
});

test("fixtures set a state by name through the table", () => {
  for (const s of PEER_STATES) {
    const p = new Peer("p", "t", "h", 0);
    p.state = s;
    assert.equal(p.state, s);
  }
  assert.equal(eventTo("succeeded", "running"), undefined);
  const p = new Peer("p", "t", "h", 0);
  p.state = "succeeded";
  p.state = "running";
  assert.equal(p.state, "succeeded");
});

test("the engine counts a rejected transition and carries on", () => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0" } });
  const engine = new SchedulingEngine({ config, logger: createLogger("silent"), store: new ResourceStore(), trigger: async () => undefined });
  const { peer } = peerIn("failed");
  engine.transition(peer, "parents");
  engine.transition(peer, "started");
  assert.equal(peer.state, "failed");
  assert.equal(engine.rejectedTransitions, 2);
  engine.transition(peer, "source");
  assert.equal(peer.state, "backToSource");
  assert.equal(engine.rejectedTransitions, 2);
});

test("no scheduler code assigns a peer's state outside the table", () => {
  const root = fileURLToPath(new URL("../../../src/scheduler/", import.meta.url));
  const files = (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts"));
  assert.ok(files.length > 10);
  for (const f of files) {
    const text = readFileSync(join(root, f), "utf8");
    assert.doesNotMatch(text, /\.state\s*=[^=]/, f);
  }
});

test("one daemon client pool: a host's client goes when the host is removed", () => {
  const store = new ResourceStore();
  const clients = new DaemonClients();
  store.hosts.onRemove((h) => clients.forget(h));
  const defaults = { normalUploadSlots: 4, seedUploadSlots: 8 };
  const hostMsg = (i: number) => create(schedulerv1.HostSchema, { id: `h${i}`, ip: "127.0.0.1", apiPort: 9000 + i, uploadPort: 1, type: HostType.NORMAL });
  const hosts = [0, 1, 2].map((i) => store.upsertHost(hostMsg(i), 0, 0, defaults).host);
  for (const h of hosts) clients.get(h);
  assert.equal(clients.get(hosts[0]!), clients.get(hosts[0]!));
  assert.equal(clients.size, 3);
  store.removeHost(hosts[1]!);
  assert.equal(clients.size, 2);
  for (const h of store.hosts.expired(10_000_000, 1000)) store.removeHost(h);
  assert.equal(clients.size, 0);
});
