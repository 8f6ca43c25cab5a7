// The fixture Kubernetes API server (test/helpers/kube-api.ts) checked
// against the real client, kubectl: if kubectl can discover, read, label,
// taint, untaint and page through it, the protocol our own client is tested
// against is the real one (content types included: kubectl labels with a
// merge patch and taints with a strategic merge patch).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startKubeApi, type KubeApi } from "../helpers/kube-api.js";

const hasKubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;
const SKIP = hasKubectl ? false : "kubectl is not installed";

async function kubectl(api: KubeApi, dir: string, args: string[], token = "fixture-token"): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const { spawn } = await import("node:child_process");
  const base = ["--server", api.url, "--token", token, "--certificate-authority", api.caFile, "--cache-dir", join(dir, "cache")];
  // Async: the fixture answers from this process's event loop.
  return new Promise((resolve) => {
    const p = spawn("kubectl", [...base, ...args], { env: { PATH: process.env.PATH, HOME: dir, KUBECONFIG: join(dir, "none") } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

test("kubectl gets, labels, taints and untaints a node of the fixture, and pages through its pods", { skip: SKIP }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "kube-fixture-"));
  const api = await startKubeApi(dir);
  t.after(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  api.addNode("n1", {
    taints: [
      { key: "damselfly.io/mirror-not-ready", effect: "NoSchedule" },
      { key: "other", value: "x", effect: "NoSchedule" },
    ],
  });
  for (const [pod, node] of [
    ["damselfly-daemon-a", "n1"],
    ["damselfly-daemon-b", "n2"],
    ["damselfly-daemon-c", "n3"],
  ])
    api.addPod("damselfly", pod!, node!, { "app.kubernetes.io/component": "daemon" });
  api.addPod("damselfly", "damselfly-manager-x", "n2", { "app.kubernetes.io/component": "manager" });

  const got = await kubectl(api, dir, ["get", "node", "n1", "-o", "json"]);
  assert.equal(got.status, 0, got.stderr);
  assert.equal(JSON.parse(got.stdout).metadata.name, "n1");

  const label = await kubectl(api, dir, ["label", "node", "n1", "damselfly.io/mirror-ready=true"]);
  assert.equal(label.status, 0, label.stderr);
  assert.equal(api.nodes.get("n1").metadata.labels["damselfly.io/mirror-ready"], "true");
  assert.ok(api.requests.some((r) => r.method === "PATCH" && r.contentType === "application/merge-patch+json"));

  const untaint = await kubectl(api, dir, ["taint", "node", "n1", "damselfly.io/mirror-not-ready:NoSchedule-"]);
  assert.equal(untaint.status, 0, untaint.stderr);
  assert.deepEqual(api.nodes.get("n1").spec.taints, [{ key: "other", value: "x", effect: "NoSchedule" }]);
  const taint = await kubectl(api, dir, ["taint", "node", "n1", "damselfly.io/mirror-not-ready=:NoSchedule"]);
  assert.equal(taint.status, 0, taint.stderr);
  assert.deepEqual(
    api.nodes
      .get("n1")
      .spec.taints.map((x: { key: string }) => x.key)
      .sort(),
    ["damselfly.io/mirror-not-ready", "other"],
  );
  assert.ok(api.requests.some((r) => r.method === "PATCH" && r.contentType === "application/strategic-merge-patch+json"));

  const before = api.requests.length;
  const pods = await kubectl(api, dir, ["-n", "damselfly", "get", "pods", "-l", "app.kubernetes.io/component=daemon", "-o", "name", "--chunk-size=1"]);
  assert.equal(pods.status, 0, pods.stderr);
  assert.deepEqual(pods.stdout.trim().split("\n"), ["pod/damselfly-daemon-a", "pod/damselfly-daemon-b", "pod/damselfly-daemon-c"]);
  const pages = api.requests.slice(before).filter((r) => r.path === "/api/v1/namespaces/damselfly/pods");
  assert.equal(pages.length, 3, "one request per page of one (continue followed)");

  const byNode = await kubectl(api, dir, ["-n", "damselfly", "get", "pods", "--field-selector", "spec.nodeName=n2", "-o", "name"]);
  assert.deepEqual(byNode.stdout.trim().split("\n"), ["pod/damselfly-daemon-b", "pod/damselfly-manager-x"]);

  const denied = await kubectl(api, dir, ["get", "node", "n1"], "wrong-token");
  assert.notEqual(denied.status, 0);
  assert.match(denied.stderr, /Unauthorized/);
});
