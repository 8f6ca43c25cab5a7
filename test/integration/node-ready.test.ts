// The node-ready signal in a real daemon process, against the fixture
// Kubernetes API server (test/helpers/kube-api.ts, checked against kubectl):
// configured as the DaemonSet does (DAMSELFLY_DAEMON_KUBERNETES_NODE_NAME from
// the downward API, KUBERNETES_SERVICE_HOST/PORT, the service account files),
// the node is labelled and untainted once the daemon's mirror answered GET
// /v2/, and the label turns false on SIGTERM. A rejected token or a hostile
// API server is logged with its code while the daemon serves on.
import { describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import { startKubeApi, type KubeApi } from "../helpers/kube-api.js";
import { rssOf } from "../helpers/oversized.js";

const LABEL = "damselfly.io/mirror-ready";
const TAINT = "damselfly.io/mirror-not-ready";
const MiB = 1024 * 1024;

interface Setup {
  api: KubeApi;
  // GET /v2/ requests the stand-in upstream registry saw (the mirror's probe, forwarded).
  upstreamV2: () => number;
  daemon: () => Promise<DaemonHandle>;
  stop: (d: DaemonHandle) => Promise<number | null>;
}

async function setup(t: TestContext): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "node-ready-it-"));
  const api = await startKubeApi(dir);
  api.writeServiceAccount();
  api.addNode("node-1", {
    taints: [
      { key: TAINT, effect: "NoSchedule" },
      { key: "keep-me", effect: "NoSchedule" },
    ],
  });
  // The mirror's upstream (proxy.registryMirror): a registry that wants a token.
  let v2 = 0;
  const upstream = http.createServer((req, res) => {
    if (req.url === "/v2/") v2++;
    res.writeHead(401, { "www-authenticate": 'Bearer realm="http://127.0.0.1/token"' }).end();
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const cluster = await startCluster({ peers: 0, seed: false, t });
  t.after(async () => {
    await cluster.stop();
    await api.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  const env = {
    ...api.env,
    DAMSELFLY_DAEMON_KUBERNETES_NODE_NAME: "node-1",
    DAMSELFLY_DAEMON_KUBERNETES_SERVICE_ACCOUNT_DIR: api.saDir,
    DAMSELFLY_DAEMON_PROXY_REGISTRY_MIRROR: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`,
  };
  return {
    api,
    upstreamV2: () => v2,
    daemon: () => cluster.addDaemon({ name: "damselfly-daemon-x7k2p", env }),
    stop: (d) => cluster.stopDaemon(d, "SIGTERM", 10_000),
  };
}

const labels = (api: KubeApi) => api.nodes.get("node-1").metadata.labels;
const taintKeys = (api: KubeApi) => (api.nodes.get("node-1").spec.taints ?? []).map((x: { key: string }) => x.key);

async function proxyServes(d: DaemonHandle): Promise<void> {
  const r = await request(`${d.proxyUrl}/healthy`);
  assert.equal(r.statusCode, 200);
  await r.body.dump();
}

describe("daemon node-ready signal", { timeout: 120_000 }, () => {
  test("the label appears and the taint goes once the mirror answered; SIGTERM turns the label false", async (t) => {
    const s = await setup(t);
    const d = await s.daemon();
    const marked = await d.proc.waitForLog("node marked ready for pulls: the registry mirror answers", 20_000);
    assert.equal(marked.mirrorStatus, 401, "the mirror answered the probe with the upstream's status");
    assert.ok(s.upstreamV2() >= 1, "the probe went through the mirror");
    const readyAt = d.proc.logs.findIndex((l) => l.msg === "daemon ready");
    assert.ok(readyAt >= 0 && readyAt < d.proc.logs.indexOf(marked), "marked after the daemon (and its proxy) was up");
    await d.proc.waitForLog("node taint removed: the registry mirror answers", 20_000);
    assert.equal(labels(s.api)[LABEL], "true");
    assert.deepEqual(taintKeys(s.api), ["keep-me"]);
    const untaint = s.api.requests.find((r) => r.method === "PATCH" && r.contentType === "application/json-patch+json");
    assert.ok(untaint, "the taint is removed with a JSON patch");

    assert.equal(await s.stop(d), 0);
    assert.equal(labels(s.api)[LABEL], "false");
    assert.deepEqual(taintKeys(s.api), ["keep-me"], "the taint is not put back");
    assert.ok(d.proc.logs.some((l) => l.msg === "node marked not ready for pulls (daemon stopping)"));
  });

  test("a rejected token: DF_ERR_KUBE_AUTH logged once, the daemon serves on, and a rotated token is picked up", async (t) => {
    const s = await setup(t);
    writeFileSync(join(s.api.saDir, "token"), "stale-token");
    const d = await s.daemon();
    const line = await d.proc.waitForLog("node not marked ready for pulls yet, retrying", 20_000);
    assert.equal(line.code, "DF_ERR_KUBE_AUTH");
    assert.match(String(line.err), /401/);
    assert.doesNotMatch(d.proc.stderr(), /stale-token|fixture-token/, "tokens are never logged");
    await proxyServes(d);
    // The kubelet rotates the projected token: the next retry reads the new one.
    s.api.writeServiceAccount();
    await d.proc.waitForLog("node marked ready for pulls: the registry mirror answers", 30_000);
    assert.equal(labels(s.api)[LABEL], "true");
    assert.equal(d.proc.logs.filter((l) => l.code === "DF_ERR_KUBE_AUTH").length, 1, "one line per change, not per retry");
  });

  test("no service account token: said once, the signal is off, the daemon serves", async (t) => {
    const s = await setup(t);
    rmSync(join(s.api.saDir, "token"));
    const d = await s.daemon();
    const off = await d.proc.waitForLog("node-ready signal off: no Kubernetes API access", 20_000);
    assert.equal(off.code, "DF_ERR_KUBE_CONFIG");
    assert.match(String(off.err), /token is missing/);
    await proxyServes(d);
    assert.equal(s.api.requests.length, 0);
  });

  test("a hostile API server (64 MiB answer, then garbage JSON) is bounded and logged; the daemon serves on", async (t) => {
    const s = await setup(t);
    s.api.hostile = "huge";
    const d = await s.daemon();
    const rssBefore = rssOf(d.proc.pid);
    const huge = await d.proc.waitForLog("node not marked ready for pulls yet, retrying", 20_000, (l) => l.code === "DF_ERR_KUBE_RESPONSE");
    assert.match(String(huge.err), /larger than/);
    assert.ok(rssOf(d.proc.pid) - rssBefore < 48 * MiB, "the 64 MiB answer was not held");
    s.api.hostile = "garbage";
    await d.proc.waitForLog("node not marked ready for pulls yet, retrying", 30_000, (l) => /not JSON/.test(String(l.err)));
    assert.equal(d.proc.running, true);
    await proxyServes(d);
    s.api.hostile = undefined;
    await d.proc.waitForLog("node marked ready for pulls: the registry mirror answers", 30_000);
    assert.equal(labels(s.api)[LABEL], "true");
  });
});
