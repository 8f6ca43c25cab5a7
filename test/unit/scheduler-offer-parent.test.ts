// A peer that joins last must still get children: lists fill with whoever had
// pieces first, and on the testbed (N=16, 15 candidates each) the last peer
// served 0 pieces and its uplink idled. When a peer stores its first piece,
// running peers that do not know it hear of it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { HostType, schedulerv1 } from "../../src/protocol/index.js";
import { ResourceStore } from "../../src/scheduler/resources/resource-store.js";
import { SchedulingEngine } from "../../src/scheduler/scheduling/engine.js";
import { PeerEvents } from "../../src/scheduler/scheduling/peer-events.js";

const TASK = "a".repeat(64);
const LIMIT = 15;

test("with 16 peers and 15 candidates each, every peer ends up a parent of others, lists stay bounded", async () => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0", candidateParentLimit: LIMIT } });
  const store = new ResourceStore({ candidateParentLimit: LIMIT });
  const clock = 1_000_000;
  const engine = new SchedulingEngine({ config, logger: createLogger("silent"), store, trigger: async () => undefined, now: () => clock });
  const events = new PeerEvents(engine);
  const host = (i: number, seed: boolean) =>
    store.upsertHost(
      create(schedulerv1.HostSchema, {
        id: `h${i}`,
        hostname: `h${i}`,
        ip: `10.0.0.${i + 1}`,
        uploadPort: 1,
        apiPort: seed ? 2 : 0,
        type: seed ? HostType.SEED : HostType.NORMAL,
        uploadSlots: 200,
      }),
      0,
      clock,
      config,
    );
  const register = (i: number) => {
    const h = store.hosts.get(`h${i}`)!;
    return events.register(
      h,
      TASK,
      `p${i}`,
      create(schedulerv1.RegisterPeerRequestSchema, { download: { url: "http://o/f" }, finishedPieces: 0 }) as never,
      new AsyncQueue(),
    ).peer;
  };
  for (let i = 0; i <= 16; i++) host(i, i === 0);
  // The seed holds the whole task.
  const seed = register(0);
  events.finished(seed, 128n << 20n, 1n << 20n, 128);
  const piece = (parentId: string) => create(schedulerv1.PieceFinishedRequestSchema, { number: 0, length: 1n << 20n, parentId, costMicros: 1000n });
  // Peers join one by one; each stores its first piece (from the seed) before the next joins.
  const peers = [];
  for (let i = 1; i <= 16; i++) {
    const p = register(i);
    events.downloadStarted(p);
    events.pieceFinished(p, piece(seed.id));
    peers.push(p);
    await new Promise((r) => setImmediate(r));
  }
  for (const p of peers) {
    const children = store.childrenOf(store.tasks.get(TASK)!, p.id).length;
    assert.ok(children >= 10, `${p.id} is a candidate of only ${children} peers`);
    assert.ok(p.candidates.size <= LIMIT + 4, `${p.id} holds ${p.candidates.size} candidates`);
  }
  const last = peers[peers.length - 1]!;
  assert.equal(store.childrenOf(store.tasks.get(TASK)!, last.id).length, LIMIT, "the last peer to join has a full set of children");
});
