// SchedulerLocality: images pods asked about are resolved off the request
// path, the schedulers are asked which hosts hold each layer, and the index
// is swapped whole; failures keep the previous index; every list is bounded.
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/common/logger.js";
import { prioritize, type Layer } from "../../src/manager/extender/locality.js";
import { parseExtenderArgs } from "../../src/manager/extender/protocol.js";
import { DEFAULT_LOCALITY_LIMITS, SchedulerLocality, type SchedulerLocalityDeps } from "../../src/manager/extender/scheduler-locality.js";

const layer = (c: string, size: number): Layer => ({ digest: `sha256:${c.repeat(64)}`, size, taskId: `t-${c}` });
const IMAGES: Record<string, Layer[]> = { "reg.local/app:1": [layer("a", 900), layer("b", 100)] };
type Peer = { hostname: string; state: string; finishedPieces: number; totalPieces: number };
const PEERS: Record<string, Peer[]> = {
  "t-a": [
    { hostname: "node-a", state: "succeeded", finishedPieces: 4, totalPieces: 4 },
    { hostname: "node-b", state: "running", finishedPieces: 1, totalPieces: 4 }, // not held yet
  ],
  "t-b": [{ hostname: "node-b", state: "succeeded", finishedPieces: 1, totalPieces: 1 }],
};

// A scheduler's ListTaskHolders over PEERS (whole holders only, host names
// by index), as src/scheduler/task-jobs.ts answers it.
function holdersOf(taskIds: string[]) {
  const hostnames: string[] = [];
  const tasks = taskIds.flatMap((taskId) => {
    const peers = PEERS[taskId];
    if (!peers) return [];
    const held = peers.filter((p) => p.state === "succeeded" || (p.totalPieces > 0 && p.finishedPieces === p.totalPieces));
    const hosts = held.map((p) => (hostnames.includes(p.hostname) ? hostnames.indexOf(p.hostname) : hostnames.push(p.hostname) - 1));
    return [{ taskId, hosts }];
  });
  return { hostnames, tasks };
}

function deps(over: Partial<SchedulerLocalityDeps> = {}, o: { batch?: boolean } = {}) {
  const calls = { resolve: [] as string[], rpc: [] as string[], batches: [] as string[][] };
  const d: SchedulerLocalityDeps = {
    clusters: async () => [{ id: 1, schedulers: [{ ip: "127.0.0.1", port: 1 }] }],
    client: () => ({
      listTaskPeers: (async (req: { taskId: string }) => {
        calls.rpc.push(req.taskId);
        return { taskId: req.taskId, peers: PEERS[req.taskId] ?? [] };
      }) as never,
      // o.batch false: a scheduler from before ListTaskHolders.
      listTaskHolders: (async (req: { taskIds: string[] }) => {
        if (o.batch === false) throw new ConnectError("not implemented", Code.Unimplemented);
        calls.batches.push([...req.taskIds]);
        for (const t of req.taskIds) calls.rpc.push(t);
        return holdersOf(req.taskIds);
      }) as never,
    }),
    headers: {},
    // reg.local and Docker Hub ("r/i:1" is docker.io/r/i:1): pulled from.
    allowed: async () => new Set(["https://reg.local", "https://registry-1.docker.io"]),
    resolve: async (image) => {
      calls.resolve.push(image);
      const l = IMAGES[image];
      if (!l) throw new Error("no such image");
      return l;
    },
    logger: createLogger("fatal", join(tmpdir(), "dfm-locality-test.log")),
    ...over,
  };
  return { d, calls };
}

const score = (loc: SchedulerLocality, image: string) => {
  const args = parseExtenderArgs({ Pod: { spec: { containers: [{ image }] } }, NodeNames: ["node-a", "node-b", "node-c"] });
  const { images, index } = loc.current();
  return prioritize(args, images, index).map((h) => h.Score);
};

test("wanted -> refresh -> the node holding the layers scores above the others; partial holders do not count", async () => {
  const { d, calls } = deps();
  const loc = new SchedulerLocality(d);
  assert.deepEqual(score(loc, "reg.local/app:1"), [0, 0, 0]); // not known yet: neutral
  loc.wanted(["reg.local/app:1", "reg.local/missing:1"]);
  await loc.refresh();
  assert.deepEqual(score(loc, "reg.local/app:1"), [9, 1, 0]);
  assert.deepEqual(calls.resolve, ["reg.local/app:1", "reg.local/missing:1"]);
  assert.deepEqual(calls.rpc.sort(), ["t-a", "t-b"]);
  // Known images are not resolved again; an unresolvable one only when asked again.
  loc.wanted(["reg.local/app:1"]);
  await loc.refresh();
  assert.equal(calls.resolve.length, 2);
});

test("a refresh whose schedulers fail keeps the previous index", async () => {
  let fail = false;
  const { d } = deps({
    clusters: async () => {
      if (fail) throw new Error("registry down");
      return [{ id: 1, schedulers: [{ ip: "127.0.0.1", port: 1 }] }];
    },
  });
  const loc = new SchedulerLocality(d);
  loc.wanted(["reg.local/app:1"]);
  await loc.refresh();
  fail = true;
  await loc.refresh();
  assert.deepEqual(score(loc, "reg.local/app:1"), [9, 1, 0]);
});

test("bounds: pending images and tracked images are capped", async () => {
  const resolved: string[] = [];
  const { d, calls } = deps({
    resolve: async (image) => {
      resolved.push(image);
      return [layer(image.slice(-1), 1)];
    },
  });
  const loc = new SchedulerLocality(d, { ...DEFAULT_LOCALITY_LIMITS, maxPending: 3, maxImages: 2 });
  loc.wanted(["r/i:1", "r/i:2", "r/i:3", "r/i:4", "r/i:5"]);
  await loc.refresh();
  assert.deepEqual(resolved, ["r/i:1", "r/i:2", "r/i:3"]);
  // Only the two most recent stay tracked: their layers are the ones asked about.
  assert.deepEqual(calls.rpc.sort(), ["t-2", "t-3"]);
});

test("start(): a pod naming a new image wakes the loop before the interval; stop() ends it", async () => {
  const { d, calls } = deps();
  const loc = new SchedulerLocality(d);
  loc.start(3_600_000); // an hour: only the wake-up can explain a refresh within the test
  loc.wanted(["reg.local/app:1"]);
  for (let i = 0; i < 100 && score(loc, "reg.local/app:1")[0] === 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(score(loc, "reg.local/app:1"), [9, 1, 0]);
  await loc.stop();
  const rpcs = calls.rpc.length;
  loc.wanted(["reg.local/other:1"]);
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal(calls.rpc.length, rpcs, "no refresh after stop()");
});

test("only references at registries the daemons pulled from are resolved; short names are Docker Hub's", async () => {
  let asked = 0;
  const { d, calls } = deps({
    allowed: async () => {
      asked++;
      return new Set(["https://reg.local", "https://registry-1.docker.io"]);
    },
  });
  const loc = new SchedulerLocality(d);
  const strangers = ["evil.example/app:1", "127.0.0.1:9/x:1", "reg.local:444/app:1", "http://reg.local/app:1", "Not A Ref"];
  loc.wanted([...strangers, "reg.local/app:1", "nginx:1.27", "docker.io/library/nginx:1.27", "index.docker.io/team/app"]);
  await loc.refresh();
  assert.deepEqual(calls.resolve, ["reg.local/app:1", "nginx:1.27", "docker.io/library/nginx:1.27", "index.docker.io/team/app"]);
  assert.equal(asked, 1);
  // Nothing pending: the schedulers are not asked for registries again.
  await loc.refresh();
  assert.equal(asked, 1);
});

test("registries unknown (no scheduler answers): nothing is resolved (fails closed)", async () => {
  const { d, calls } = deps({
    allowed: async () => {
      throw new Error("schedulers down");
    },
  });
  const loc = new SchedulerLocality(d);
  loc.wanted(["reg.local/app:1"]);
  await loc.refresh();
  assert.deepEqual(calls.resolve, []);
  assert.deepEqual(score(loc, "reg.local/app:1"), [0, 0, 0]);
});

test("the refresh asks 50 layers per ListTaskHolders; a scheduler without it is asked per layer (ListTaskPeers)", async () => {
  const many: Record<string, Layer[]> = {};
  for (let i = 0; i < 30; i++) many[`reg.local/img-${i}:1`] = [layer(`p${i}`, 10), layer(`q${i}`, 10), layer(`r${i}`, 10)];
  many["reg.local/app:1"] = IMAGES["reg.local/app:1"]!;
  const resolve = async (image: string) => many[image]!;
  const { d, calls } = deps({ resolve });
  const loc = new SchedulerLocality(d);
  loc.wanted(Object.keys(many));
  await loc.refresh();
  assert.deepEqual(
    calls.batches.map((b) => b.length),
    [50, 42],
  );
  assert.deepEqual(score(loc, "reg.local/app:1"), [9, 1, 0]);

  const old = deps({ resolve }, { batch: false });
  const loc2 = new SchedulerLocality(old.d);
  loc2.wanted(Object.keys(many));
  await loc2.refresh();
  assert.equal(old.calls.batches.length, 0);
  assert.equal(old.calls.rpc.length, 92);
  assert.deepEqual(score(loc2, "reg.local/app:1"), [9, 1, 0]);
});

test("host names are turned into node names (nodeOf) on the batched path too", async () => {
  const { d } = deps({ nodeOf: (h) => (h === "node-a" ? "node-c" : h) });
  const loc = new SchedulerLocality(d);
  loc.wanted(["reg.local/app:1"]);
  await loc.refresh();
  assert.deepEqual(score(loc, "reg.local/app:1"), [0, 1, 9]);
});
