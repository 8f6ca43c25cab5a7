// The in-cluster Kubernetes client (src/common/kubernetes) against the
// fixture API server (checked against kubectl in kube-api-fixture.test.ts):
// in-cluster discovery of server and credentials, the token re-read on each
// call (projected-token rotation), TLS verified against the cluster CA, paging,
// clear DF_ERR_KUBE_* codes, and hostile answers bounded.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inClusterAccess, runningInCluster } from "../../src/common/kubernetes/in-cluster.js";
import { KubeClient } from "../../src/common/kubernetes/kube-client.js";
import { DamselflyError } from "../../src/common/errors.js";
import { createCa } from "../../src/common/tls/issue.js";
import { startKubeApi, type KubeApi } from "../helpers/kube-api.js";

async function fixture(t: TestContext): Promise<{ api: KubeApi; client: KubeClient; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "kube-client-"));
  const api = await startKubeApi(dir);
  api.writeServiceAccount();
  const client = new KubeClient({ ...inClusterAccess(api.saDir, api.env), maxBodyBytes: 1 << 20 });
  t.after(async () => {
    await client.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { api, client, dir };
}

const code = (err: unknown) => (err instanceof DamselflyError ? err.code : String(err));

test("in-cluster access: server from KUBERNETES_SERVICE_HOST/PORT, credentials from the service account dir; missing ones say what", async (t) => {
  const { api } = await fixture(t);
  const a = inClusterAccess(api.saDir, api.env);
  assert.equal(a.server, api.url);
  assert.equal(a.namespace, "damselfly");
  assert.equal(inClusterAccess(api.saDir, { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }).server, "https://[fd00::1]:443");
  assert.equal(runningInCluster(api.saDir, api.env), true);
  assert.equal(runningInCluster(api.saDir, {}), false);
  assert.throws(
    () => inClusterAccess(api.saDir, {}),
    (e) => code(e) === "DF_ERR_KUBE_CONFIG" && /KUBERNETES_SERVICE_HOST/.test((e as Error).message),
  );
  assert.throws(
    () => inClusterAccess(join(api.saDir, "nope"), api.env),
    (e) => code(e) === "DF_ERR_KUBE_CONFIG" && /token is missing/.test((e as Error).message),
  );
});

test("get and patch a node (merge patch for labels, JSON patch with a test op for taints)", async (t) => {
  const { api, client } = await fixture(t);
  api.addNode("n1", {
    taints: [
      { key: "a", effect: "NoSchedule" },
      { key: "b", value: "v", effect: "NoExecute", timeAdded: "2026-01-01T00:00:00Z" },
    ],
  });
  const n = await client.getNode("n1");
  assert.deepEqual(n.taints, [
    { key: "a", effect: "NoSchedule" },
    { key: "b", value: "v", effect: "NoExecute" },
  ]);
  const labelled = await client.patchNode("n1", { metadata: { labels: { "x.io/y": "true" } } }, "merge");
  assert.equal(labelled.labels["x.io/y"], "true");
  assert.equal(labelled.labels["kubernetes.io/hostname"], "n1", "a merge patch keeps the other labels");
  const untainted = await client.patchNode(
    "n1",
    [
      { op: "test", path: "/spec/taints/1/key", value: "b" },
      { op: "remove", path: "/spec/taints/1" },
    ],
    "json",
  );
  assert.deepEqual(untainted.taints, [{ key: "a", effect: "NoSchedule" }]);
  // The list moved: the test op fails, nothing is removed.
  await assert.rejects(
    client.patchNode(
      "n1",
      [
        { op: "test", path: "/spec/taints/0/key", value: "b" },
        { op: "remove", path: "/spec/taints/0" },
      ],
      "json",
    ),
    (e) => code(e) === "DF_ERR_KUBE_REJECTED" && /HTTP 422/.test((e as Error).message),
  );
  assert.equal(api.nodes.get("n1").spec.taints.length, 1);
  await assert.rejects(client.getNode("missing"), (e) => code(e) === "DF_ERR_KUBE_REJECTED" && /404.*not found/.test((e as Error).message));
  const types = api.requests.filter((r) => r.method === "PATCH").map((r) => r.contentType);
  assert.deepEqual([...new Set(types)], ["application/merge-patch+json", "application/json-patch+json"]);
});

test("list pods pages with continue, filters by selectors, and stops at maxItems", async (t) => {
  const { api, client } = await fixture(t);
  for (let i = 0; i < 7; i++) api.addPod("damselfly", `d-${i}`, `node-${i}`, { app: "daemon" });
  api.addPod("damselfly", "m-0", "node-0", { app: "manager" });
  api.addPod("other", "d-x", "node-x", { app: "daemon" });
  const before = api.requests.length;
  const all = await client.listPods("damselfly", { labelSelector: "app=daemon", limit: 3, maxItems: 100 });
  assert.equal(all.truncated, false);
  assert.deepEqual(
    all.pods.map((p) => `${p.name}@${p.nodeName}`),
    Array.from({ length: 7 }, (_, i) => `d-${i}@node-${i}`),
  );
  assert.equal(api.requests.length - before, 3, "7 pods in pages of 3");
  const some = await client.listPods("damselfly", { labelSelector: "app=daemon", limit: 3, maxItems: 4 });
  assert.deepEqual([some.pods.length, some.truncated], [4, true]);
  const onNode = await client.listPods("damselfly", { fieldSelector: "spec.nodeName=node-0", maxItems: 10 });
  assert.deepEqual(onNode.pods.map((p) => p.name).sort(), ["d-0", "m-0"]);
});

test("the token file is re-read on every call (projected-token rotation); a rejected token is DF_ERR_KUBE_AUTH", async (t) => {
  const { api, client } = await fixture(t);
  api.addNode("n1");
  await client.getNode("n1");
  api.tokens.clear();
  api.tokens.add("rotated");
  await assert.rejects(
    client.getNode("n1"),
    (e) => code(e) === "DF_ERR_KUBE_AUTH" && /401/.test((e as Error).message) && !/fixture-token/.test((e as Error).message),
  );
  writeFileSync(join(api.saDir, "token"), "rotated\n");
  assert.equal((await client.getNode("n1")).name, "n1");
});

test("TLS is verified: a server whose certificate another CA issued is refused", async (t) => {
  const { api, dir } = await fixture(t);
  const other = await createCa(join(dir, "other-ca"));
  const client = new KubeClient({ server: api.url, tokenFile: join(api.saDir, "token"), caFile: other.certFile });
  t.after(() => client.close());
  api.addNode("n1");
  await assert.rejects(client.getNode("n1"), (e) => code(e) === "DF_ERR_KUBE_UNAVAILABLE");
  assert.equal(api.requests.length, 0, "nothing was sent to the server");
});

test("hostile answers: a huge body is cut at maxBodyBytes, garbage JSON is DF_ERR_KUBE_RESPONSE, nothing throws past the client", async (t) => {
  const { api, client } = await fixture(t);
  api.addNode("n1");
  api.hostile = "huge";
  const heap = process.memoryUsage().heapUsed;
  await assert.rejects(client.getNode("n1"), (e) => code(e) === "DF_ERR_KUBE_RESPONSE" && /larger than 1048576/.test((e as Error).message));
  assert.ok(process.memoryUsage().heapUsed - heap < 32 << 20, "the 64 MiB answer was not held");
  api.hostile = "garbage";
  await assert.rejects(client.getNode("n1"), (e) => code(e) === "DF_ERR_KUBE_RESPONSE" && /not JSON/.test((e as Error).message));
  await assert.rejects(client.listPods("damselfly", { maxItems: 10 }), (e) => code(e) === "DF_ERR_KUBE_RESPONSE");
  api.hostile = undefined;
  // An error Status is passed on with its code, the client still usable after all of it.
  api.addPod("damselfly", "d-0", "n1", {});
  await assert.rejects(client.listPods("damselfly", { maxItems: 10, fieldSelector: "bogus.field=x" }), (e) => code(e) === "DF_ERR_KUBE_REJECTED");
  assert.equal((await client.getNode("n1")).name, "n1");
});
