// The extender as deployed by the DaemonSet: daemons announce their pod names
// (the only name cert-manager's CSI driver can certify), kube-scheduler asks
// about node names. A manager in a "pod" (KUBERNETES_SERVICE_HOST/PORT and a
// service account, pointing at the fixture API server) lists the daemon pods
// and scores the node each pod runs on; GET /api/v1/images/layers names it.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { startCluster } from "../helpers/cluster.js";
import { startKubeApi } from "../helpers/kube-api.js";
import { prioritizeUntil, startManager, waitForSchedulers } from "../helpers/manager.js";
import { pullBlobsThrough, registryWithImage } from "../helpers/mirror-setup.js";
import { haveRegistry } from "../helpers/registry.js";
import { tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const DAEMON = { "app.kubernetes.io/name": "damselfly", "app.kubernetes.io/component": "daemon" };

describe("extender host -> node mapping", { timeout: 120_000 }, async () => {
  const have = await haveRegistry();
  test("a host named by its pod's name scores as the node the API server says the pod runs on", {
    skip: have ? false : "docker-registry not installed",
  }, async (t) => {
    const dir = tempDir(t, "dfm-podnodes-");
    const { registry, image, ref } = await registryWithImage(t, dir, { layers: [3 * MiB, 2 * MiB], seed: "pod-nodes" });
    const api = await startKubeApi(dir);
    t.after(() => api.close());
    api.writeServiceAccount("fixture-token", "damselfly");
    api.addPod("damselfly", "damselfly-daemon-aaaaa", "node-a", DAEMON);
    api.addPod("damselfly", "damselfly-daemon-bbbbb", "node-b", DAEMON);
    const manager = await startManager({
      t,
      env: {
        ...api.env,
        DAMSELFLY_MANAGER_EXTENDER_LOCALITY: "true",
        DAMSELFLY_MANAGER_EXTENDER_REFRESH_INTERVAL: "1s",
        DAMSELFLY_MANAGER_EXTENDER_KUBERNETES_SERVICE_ACCOUNT_DIR: api.saDir,
      },
    });
    await manager.proc.waitForLog("extender: daemon pod -> node map updated", 20_000, (l) => l.pods === 2);
    const root = await manager.signin();
    const cluster = await startCluster({ peers: 0, seed: false, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"] });
    const a = await cluster.addDaemon({ name: "damselfly-daemon-aaaaa" });
    await cluster.addDaemon({ name: "damselfly-daemon-bbbbb" });
    await waitForSchedulers(manager, root);
    await pullBlobsThrough(a.proxyUrl, registry, image);

    // kube-scheduler names nodes; "damselfly-daemon-aaaaa" is no node.
    const args = {
      Pod: { metadata: { name: "web", namespace: "default" }, spec: { containers: [{ name: "web", image: ref }] } },
      Nodes: null,
      NodeNames: ["node-b", "node-a", "damselfly-daemon-aaaaa"],
    };
    await manager.api("POST", "/extender/v1/filter", { body: args });
    const scores = await prioritizeUntil(manager, args, "node-a", 10);
    assert.deepEqual(scores, [
      { Host: "node-b", Score: 0 },
      { Host: "node-a", Score: 10 },
      { Host: "damselfly-daemon-aaaaa", Score: 0 },
    ]);
    const held = await manager.api("GET", `/api/v1/images/layers?image=${encodeURIComponent(ref)}&platform=linux/amd64`, { token: root });
    assert.equal(held.status, 200, JSON.stringify(held.body));
    assert.deepEqual(
      held.body.layers.map((l: { nodes: string[] }) => l.nodes),
      image.layers.map(() => ["node-a"]),
    );
    assert.ok(
      api.requests.some((r) => r.path === "/api/v1/namespaces/damselfly/pods" && r.auth),
      "the manager listed the pods of its namespace",
    );
  });
});
