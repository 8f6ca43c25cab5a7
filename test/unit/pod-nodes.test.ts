// The manager's daemon pod -> node map (extender/pod-nodes.ts) against the
// fixture API server: hosts named by pod names (the DaemonSet's --hostname)
// are scored as the nodes the API server says the pods run on; other host
// names stay as they are; a failing LIST keeps the last map; the map is bounded.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Logger } from "../../src/common/logger.js";
import { inClusterAccess } from "../../src/common/kubernetes/in-cluster.js";
import { KubeClient } from "../../src/common/kubernetes/kube-client.js";
import { loadConfig } from "../../src/common/config.js";
import { managerSchema } from "../../src/common/schemas.js";
import { prioritize, type Layer } from "../../src/manager/extender/locality.js";
import { parseExtenderArgs } from "../../src/manager/extender/protocol.js";
import { PodNodes, podNodesFromConfig } from "../../src/manager/extender/pod-nodes.js";
import { taskHolders } from "../../src/manager/extender/batch-holders.js";
import { SchedulerLocality } from "../../src/manager/extender/scheduler-locality.js";
import { startKubeApi, type KubeApi } from "../helpers/kube-api.js";

const SELECTOR = "app.kubernetes.io/name=damselfly,app.kubernetes.io/component=daemon";
const DAEMON = { "app.kubernetes.io/name": "damselfly", "app.kubernetes.io/component": "daemon" };
const silent = pino({ level: "silent" }) as unknown as Logger;

async function fixture(t: TestContext): Promise<{ api: KubeApi; client: KubeClient }> {
  const dir = mkdtempSync(join(tmpdir(), "pod-nodes-"));
  const api = await startKubeApi(dir);
  api.writeServiceAccount();
  const client = new KubeClient(inClusterAccess(api.saDir, api.env));
  t.after(async () => {
    await client.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { api, client };
}

const layer = (c: string, size: number): Layer => ({ digest: `sha256:${c.repeat(64)}`, size, taskId: `t-${c}` });
const done = (hostname: string) => ({ hostname, state: "succeeded", finishedPieces: 1, totalPieces: 1 });
// What the schedulers know: hosts by the names they announced (pod names,
// and one bare-metal host that announced its node name).
const PEERS: Record<string, ReturnType<typeof done>[]> = {
  "t-a": [done("damselfly-daemon-x7k2p"), done("metal-1")],
  "t-b": [done("damselfly-daemon-x7k2p")],
};
const schedulerDeps = {
  clusters: async () => [{ id: 1, schedulers: [{ ip: "127.0.0.1", port: 1 }] }],
  client: () => ({ listTaskPeers: (async (req: { taskId: string }) => ({ taskId: req.taskId, peers: PEERS[req.taskId] ?? [] })) as never }),
  // The images below are at a registry the daemons have pulled from.
  allowed: async () => new Set(["https://reg.local"]),
  headers: {},
  logger: silent,
};

test("the extender scores the node a daemon pod runs on, for a host named by the pod's name", async (t) => {
  const { api, client } = await fixture(t);
  api.addPod("damselfly", "damselfly-daemon-x7k2p", "node-a", DAEMON);
  api.addPod("damselfly", "damselfly-daemon-q9w8e", "node-b", DAEMON);
  // Not a daemon pod (selector), and a daemon pod of another namespace: neither maps.
  api.addPod("damselfly", "damselfly-manager-0", "node-c", { "app.kubernetes.io/name": "damselfly", "app.kubernetes.io/component": "manager" });
  api.addPod("elsewhere", "metal-1", "node-c", DAEMON);
  const pods = new PodNodes({ client, namespace: "damselfly", selector: SELECTOR, logger: silent });
  await pods.refresh();
  assert.equal(pods.size, 2);
  assert.equal(pods.nodeOf("damselfly-daemon-x7k2p"), "node-a");
  assert.equal(pods.nodeOf("metal-1"), "metal-1", "a host that is no daemon pod keeps its name");

  const images: Record<string, Layer[]> = { "reg.local/app:1": [layer("a", 900), layer("b", 100)] };
  const loc = new SchedulerLocality({ ...schedulerDeps, resolve: async (image) => images[image]!, nodeOf: pods.nodeOf });
  loc.wanted(["reg.local/app:1"]);
  await loc.refresh();
  const args = parseExtenderArgs({ Pod: { spec: { containers: [{ image: "reg.local/app:1" }] } }, NodeNames: ["node-a", "node-b", "metal-1"] });
  const { images: src, index } = loc.current();
  assert.deepEqual(
    prioritize(args, src, index).map((h) => `${h.Host}=${h.Score}`),
    ["node-a=10", "node-b=0", "metal-1=9"],
  );
  // Without the map the pod name is no node: node-a would score 0.
  const plain = new SchedulerLocality({ ...schedulerDeps, resolve: async (image) => images[image]! });
  plain.wanted(["reg.local/app:1"]);
  await plain.refresh();
  assert.equal(prioritize(args, plain.current().images, plain.current().index)[0]!.Score, 0);
});

test("holders of a task (what GET /api/v1/images/layers lists) are named through the same map", async (t) => {
  const { api, client } = await fixture(t);
  api.addPod("damselfly", "damselfly-daemon-x7k2p", "node-a", DAEMON);
  const pods = new PodNodes({ client, namespace: "damselfly", selector: SELECTOR, logger: silent });
  await pods.refresh();
  const o = { ...schedulerDeps, signal: new AbortController().signal, timeoutMs: 1_000 };
  const schedulers = [{ ip: "127.0.0.1", port: 1 }] as never;
  assert.deepEqual((await taskHolders(schedulers, "t-a", { ...o, nodeOf: pods.nodeOf })).sort(), ["metal-1", "node-a"]);
  assert.deepEqual((await taskHolders(schedulers, "t-a", o)).sort(), ["damselfly-daemon-x7k2p", "metal-1"]);
});

test("a failing LIST keeps the last map; a pod gone from the API drops out; the map is bounded", async (t) => {
  const { api, client } = await fixture(t);
  for (let i = 0; i < 5; i++) api.addPod("damselfly", `d-${i}`, `node-${i}`, DAEMON);
  api.addPod("damselfly", "pending", "", DAEMON); // not bound yet: no node to name
  const pods = new PodNodes({ client, namespace: "damselfly", selector: SELECTOR, logger: silent, maxPods: 3 });
  await pods.refresh();
  assert.equal(pods.size, 3, "bounded by maxPods");
  const all = new PodNodes({ client, namespace: "damselfly", selector: SELECTOR, logger: silent });
  await all.refresh();
  assert.equal(all.size, 5);
  assert.equal(all.nodeOf("pending"), "pending");
  api.hostile = "garbage";
  await all.refresh();
  assert.equal(all.nodeOf("d-4"), "node-4", "kept after a failed LIST");
  api.hostile = undefined;
  api.tokens.clear();
  await all.refresh();
  assert.equal(all.nodeOf("d-4"), "node-4", "kept after a refused LIST");
  api.tokens.add("fixture-token");
  api.pods.delete("damselfly/d-4");
  await all.refresh();
  assert.equal(all.nodeOf("d-4"), "d-4");
});

test("config: auto is on only in a pod with a service account; on without one fails; off is off", async (t) => {
  const { api } = await fixture(t);
  const cfg = (env: Record<string, string>) => loadConfig(managerSchema, { envPrefix: "MANAGER", env });
  const sa = { DAMSELFLY_MANAGER_EXTENDER_KUBERNETES_SERVICE_ACCOUNT_DIR: api.saDir };
  const saved = { ...process.env };
  t.after(() => {
    for (const k of Object.keys(api.env)) delete process.env[k];
    Object.assign(process.env, saved);
  });
  assert.equal(podNodesFromConfig(cfg(sa), silent), undefined, "auto, not in a pod");
  assert.throws(() => podNodesFromConfig(cfg({ ...sa, DAMSELFLY_MANAGER_EXTENDER_KUBERNETES_PODS: "on" }), silent), /KUBERNETES_SERVICE_HOST/);
  Object.assign(process.env, api.env);
  const on = podNodesFromConfig(cfg(sa), silent);
  assert.ok(on, "auto, in a pod");
  await on.client.close();
  assert.equal(podNodesFromConfig(cfg({ ...sa, DAMSELFLY_MANAGER_EXTENDER_KUBERNETES_PODS: "off" }), silent), undefined);
  assert.throws(() => cfg({ DAMSELFLY_MANAGER_EXTENDER_KUBERNETES_PODS: "maybe" }), /auto, on or off/);
});
