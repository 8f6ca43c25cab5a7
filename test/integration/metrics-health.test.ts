// --metrics-listen and the health endpoints, against real processes: the
// counters of a seed and three peers before and after a swarm download add up
// to the file (and to what the counting origin sent), a 404 shows as a failure
// with its code, the scheduler's decisions and the manager's requests are
// counted, and /readyz turns 503 when the scheduler is unreachable or the
// store cannot be written.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { closedPort, spawnDamselfly } from "../helpers/procs.js";
import { sha256File } from "../helpers/store.js";
import { h2Get, httpGet, metric, scrape, type Sample } from "../helpers/metrics.js";
import { startManager } from "../helpers/manager.js";

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;
const PATH = "/metrics/blob.bin";
const METRICS = ["--metrics-listen", "127.0.0.1:0"];

const metricsOf = (d: DaemonHandle): string => String(d.ready.metrics);

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// An absolute-form request through the daemon's HTTP proxy.
function viaProxy(proxy: string, url: string): Promise<number> {
  const [host, port] = proxy.split(":");
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path: url, method: "GET" }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("metrics and health on a seed and three peers", { timeout: 120_000 }, () => {
  let origin: Origin;
  let cluster: Cluster;
  let outDir: string;
  let schedulerMetrics: string;

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-metrics-out-"));
    origin = await startOrigin();
    cluster = await startCluster({ peers: 3, seed: true, schedulerArgs: METRICS, daemonArgs: METRICS });
    schedulerMetrics = String((await cluster.scheduler.proc.waitForLog("scheduler listening")).metrics);
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("every server answers /healthz and /readyz; other paths 404, other methods 405", async () => {
    for (const d of cluster.daemons) {
      const m = metricsOf(d);
      assert.deepEqual(await httpGet(`http://${m}/healthz`), { status: 200, body: "ok\n" }, d.name);
      assert.deepEqual(await httpGet(`http://${m}/readyz`), { status: 200, body: "ok\n" }, d.name);
      assert.equal((await httpGet(`http://${m}/metrics?x=1`)).status, 200);
      for (const p of ["/", "/nope", "/metrics/x", "/healthz/", "/%zz", "//metrics"])
        assert.equal((await httpGet(`http://${m}${p}`)).status, 404, `${d.name} ${p}`);
      assert.equal((await httpGet(`http://${m}/metrics`, "POST")).status, 405);
      assert.equal((await httpGet(`http://${m}/readyz`, "DELETE")).status, 405);
      // The data plane, the proxy and the local API (HTTP/2) too.
      assert.deepEqual(await httpGet(`http://${d.upload}/readyz`), { status: 200, body: "ok\n" }, `${d.name} upload`);
      assert.deepEqual(await httpGet(`http://${d.upload}/healthz`), { status: 200, body: "ok\n" });
      assert.equal((await httpGet(`http://${d.upload}/readyz`, "POST")).status, 405);
      assert.deepEqual(await httpGet(`${d.proxyUrl}/readyz`), { status: 200, body: "ok\n" }, `${d.name} proxy`);
      assert.deepEqual(await h2Get(d.api, "/readyz"), { status: 200, body: "ok\n" }, `${d.name} api`);
      assert.deepEqual(await h2Get(d.api, "/healthz"), { status: 200, body: "ok\n" });
    }
    assert.deepEqual(await httpGet(`http://${schedulerMetrics}/readyz`), { status: 200, body: "ok\n" });
    assert.deepEqual(await h2Get(cluster.scheduler.address, "/readyz"), { status: 200, body: "ok\n" });
    assert.equal((await h2Get(cluster.scheduler.address, "/healthz", "POST")).status, 405);
    assert.equal((await httpGet(`http://${schedulerMetrics}/other`)).status, 404);
  });

  test("a swarm download: per peer, bytes from peers + from origin = the file; uploads match; the scheduler counts its decisions", async (t) => {
    const expected = sha256Hex(origin.addRandomFile(PATH, SIZE, "metrics"));
    const url = origin.url(PATH);
    const before = await Promise.all(cluster.daemons.map((d) => scrape(metricsOf(d))));
    const schedBefore = await scrape(schedulerMetrics);
    const results = await Promise.all(cluster.peers.map((p, i) => p.get([url, "-O", join(outDir, `out-${i}.bin`), "--no-progress"], { timeoutMs: 60_000 })));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
      assert.equal(await sha256File(join(outDir, `out-${i}.bin`)), expected);
    }
    const afterS = await Promise.all(cluster.daemons.map((d) => scrape(metricsOf(d))));
    const delta = (i: number, name: string, labels: Record<string, string> = {}) => metric(afterS[i]!, name, labels) - metric(before[i]!, name, labels);

    let fromPeersAll = 0;
    let fromOriginAll = 0;
    let uploadedAll = 0;
    for (const [i, d] of cluster.daemons.entries()) {
      const peer = delta(i, "damselfly_download_bytes_total", { source: "peer" });
      const fromOrigin = delta(i, "damselfly_download_bytes_total", { source: "origin" });
      const uploaded = delta(i, "damselfly_upload_bytes_total");
      t.diagnostic(
        `${d.name}: from peers ${peer}, from origin ${fromOrigin}, uploaded ${uploaded}, local ${delta(i, "damselfly_download_bytes_total", { source: "local" })}`,
      );
      assert.equal(peer + fromOrigin, SIZE, `${d.name}: from peers ${peer} + from origin ${fromOrigin} should be the file`);
      assert.equal(delta(i, "damselfly_downloads_started_total"), 1, d.name);
      assert.equal(delta(i, "damselfly_downloads_succeeded_total"), 1, d.name);
      assert.equal(delta(i, "damselfly_downloads_failed_total"), 0, d.name);
      assert.ok(delta(i, "damselfly_piece_download_duration_seconds_count") > 0, `${d.name}: pieces timed`);
      fromPeersAll += peer;
      fromOriginAll += fromOrigin;
      uploadedAll += uploaded;
    }
    const seed = cluster.daemons.indexOf(cluster.seed!);
    assert.equal(delta(seed, "damselfly_download_bytes_total", { source: "origin" }), SIZE, "the seed fetched the whole file from the origin");
    assert.equal(delta(seed, "damselfly_back_to_source_total"), 1);
    assert.equal(fromOriginAll, origin.bytesSent(PATH), "what the daemons counted from the origin is what the origin sent");
    // Every byte a child stored from a peer was uploaded by a parent. A
    // parent may also send bytes no child keeps (an endgame duplicate that
    // lost, a piece cut off by a child that gave up): at most a few pieces.
    t.diagnostic(`uploaded ${uploadedAll}, received from peers ${fromPeersAll} (difference ${uploadedAll - fromPeersAll})`);
    assert.ok(uploadedAll >= fromPeersAll, `uploaded ${uploadedAll} < received from peers ${fromPeersAll}`);
    assert.ok(uploadedAll - fromPeersAll <= 8 * MiB, `uploaded ${uploadedAll} is far more than received from peers ${fromPeersAll}`);

    const sched = await scrape(schedulerMetrics);
    const sdelta = (name: string, labels: Record<string, string> = {}) => metric(sched, name, labels) - metric(schedBefore, name, labels);
    assert.ok(sdelta("damselfly_scheduler_registrations_total") >= 4, "seed + 3 peers registered");
    assert.ok(sdelta("damselfly_scheduler_decisions_total") >= 4, "a decision per registration");
    assert.ok(sdelta("damselfly_scheduler_decisions_total", { result: "normal_task" }) >= 3, "the peers got parents");
    assert.ok(sdelta("damselfly_scheduler_back_to_source_total") >= 1, "the seed was sent to the origin");
    assert.ok(sdelta("damselfly_scheduler_decision_duration_seconds_count") >= 4, "decision latency observed");
    assert.ok(sdelta("damselfly_scheduler_peers_finished_total") >= 4);
    assert.equal(metric(sched, "damselfly_scheduler_hosts"), cluster.daemons.length);
    assert.ok(metric(sched, "damselfly_scheduler_peers") >= 4);
    assert.ok(metric(sched, "damselfly_scheduler_tasks") >= 1);
    assert.ok(metric(sched, "damselfly_process_cpu_seconds_total") > 0, "process metrics carry the damselfly_ prefix");

    // Asked again, the file comes from the local store.
    const p0 = cluster.peers[0]!;
    const i0 = cluster.daemons.indexOf(p0);
    const again = await p0.get([url, "-O", join(outDir, "again.bin"), "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(again.code, 0, again.stderr);
    const third = await scrape(metricsOf(p0));
    assert.equal(
      metric(third, "damselfly_download_bytes_total", { source: "local" }) - metric(afterS[i0]!, "damselfly_download_bytes_total", { source: "local" }),
      SIZE,
    );
    assert.equal(
      metric(third, "damselfly_downloads_started_total"),
      metric(afterS[i0]!, "damselfly_downloads_started_total"),
      "no new download for a cache hit",
    );
  });

  test("a 404 at the origin counts as a failed download with its error code", async () => {
    const p = cluster.peers[1]!;
    const before: Sample[] = await scrape(metricsOf(p));
    const r = await p.get([origin.url("/metrics/missing.bin"), "-O", join(outDir, "missing.bin"), "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(r.code, 4, r.stderr);
    const after = await scrape(metricsOf(p));
    const d = (name: string, labels: Record<string, string> = {}) => metric(after, name, labels) - metric(before, name, labels);
    assert.equal(d("damselfly_downloads_failed_total", { reason: "DF_ERR_SOURCE_STATUS" }), 1);
    assert.equal(d("damselfly_downloads_succeeded_total"), 0);
  });

  test("proxy requests are counted by kind and outcome", async () => {
    const p = cluster.peers[2]!;
    origin.addRandomFile("/metrics/plain.txt", 1000, "plain");
    const before = await scrape(metricsOf(p));
    assert.equal(await viaProxy(p.proxy, origin.url("/metrics/plain.txt")), 200);
    assert.equal((await httpGet(`${p.proxyUrl}/not-a-registry-path`)).status, 400);
    const after = await scrape(metricsOf(p));
    const d = (labels: Record<string, string>) =>
      metric(after, "damselfly_proxy_requests_total", labels) - metric(before, "damselfly_proxy_requests_total", labels);
    assert.equal(d({ kind: "other", outcome: "forwarded" }), 1);
    assert.equal(d({ kind: "other", outcome: "error" }), 1);
  });
});

describe("readiness failures", { timeout: 90_000 }, () => {
  test("a daemon whose scheduler is unreachable is alive but not ready", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "damselfly-noscheduler-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const dead = await closedPort();
    const proc = spawnDamselfly(
      [
        "daemon",
        "--scheduler",
        `127.0.0.1:${dead}`,
        "--scheduler-connect-timeout",
        "500ms",
        "--data-dir",
        dir,
        "--listen",
        "127.0.0.1:0",
        "--upload-listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
        ...METRICS,
      ],
      { name: "lonely", t },
    );
    const ready = await proc.waitForLog("daemon ready", 20_000);
    const m = String(ready.metrics);
    assert.deepEqual(await httpGet(`http://${m}/healthz`), { status: 200, body: "ok\n" });
    const r = await httpGet(`http://${m}/readyz`);
    assert.equal(r.status, 503, r.body);
    const body = JSON.parse(r.body) as { status: string; checks: Record<string, string> };
    assert.equal(body.status, "not ready");
    assert.equal(body.checks.storage, "ok");
    assert.match(body.checks.scheduler!, /no scheduler answered/);
    // The network-facing ports say so too, and nothing more: no scheduler
    // address, no storage error for whoever can reach them.
    for (const [port, url] of [
      ["upload", `http://${String(ready.upload)}/readyz`],
      ["proxy", `http://${String(ready.proxy)}/readyz`],
    ]) {
      const terse = await httpGet(url!);
      assert.equal(terse.status, 503, `${port}: ${terse.body}`);
      assert.deepEqual(JSON.parse(terse.body), { status: "not ready" }, `${port} /readyz shows details: ${terse.body}`);
      assert.ok(!terse.body.includes(String(dead)), `${port} /readyz names the scheduler`);
    }
  });

  test("a daemon whose store cannot be written is not ready, and ready again once it can", async (t) => {
    const root = mkdtempSync(join(tmpdir(), "damselfly-rostore-"));
    const store = join(root, "store");
    mkdirSync(store);
    let mounted = false;
    if (process.getuid?.() === 0) {
      try {
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", store], { stdio: "ignore" });
        mounted = true;
      } catch {
        // no mounts here: break the store another way
      }
    }
    t.after(() => {
      if (mounted) {
        try {
          execFileSync("umount", ["-l", store], { stdio: "ignore" });
        } catch {
          // already gone
        }
      }
      rmSync(root, { recursive: true, force: true });
    });
    const cluster = await startCluster({ peers: 0, seed: false, t, dataRoot: join(root, "daemons"), daemonArgs: METRICS });
    const d = await cluster.addDaemon({ name: "ro", dataDir: store });
    const m = metricsOf(d);
    assert.equal((await httpGet(`http://${m}/readyz`)).status, 200);
    const tasks = join(store, "tasks");
    // Read-only remount (as root) or a file where the tasks directory was.
    const breakStore = () => {
      if (mounted) execFileSync("mount", ["-o", "remount,ro", store]);
      else {
        renameSync(tasks, `${tasks}.away`);
        writeFileSync(tasks, "not a directory");
      }
    };
    const fixStore = () => {
      if (mounted) execFileSync("mount", ["-o", "remount,rw", store]);
      else {
        rmSync(tasks);
        renameSync(`${tasks}.away`, tasks);
      }
    };
    t.diagnostic(mounted ? "store: tmpfs remounted read-only" : "store: a file where the tasks directory was");
    breakStore();
    let last = { status: 0, body: "" };
    await waitFor("/readyz to report the store", async () => (last = await httpGet(`http://${m}/readyz`)).status === 503);
    const checks = (JSON.parse(last.body) as { checks: Record<string, string> }).checks;
    assert.match(checks.storage!, mounted ? /not writable: EROFS/ : /not writable: ENOTDIR/);
    assert.equal(checks.scheduler, "ok");
    assert.deepEqual(await httpGet(`http://${m}/healthz`), { status: 200, body: "ok\n" }, "alive all the same");
    fixStore();
    await waitFor("/readyz to recover", async () => (await httpGet(`http://${m}/readyz`)).status === 200);
  });
});

test("the manager serves its metrics and health", { timeout: 60_000 }, async (t) => {
  const m = await startManager({ t, args: METRICS });
  const ready = await m.proc.waitForLog("manager ready");
  const addr = String(ready.metrics);
  assert.deepEqual(await httpGet(`${m.url}/healthz`), { status: 200, body: "ok\n" });
  assert.deepEqual(await httpGet(`${m.url}/readyz`), { status: 200, body: "ok\n" });
  assert.equal((await httpGet(`${m.url}/readyz`, "POST")).status, 405);
  assert.deepEqual(await httpGet(`http://${addr}/readyz`), { status: 200, body: "ok\n" });
  const root = await m.signin();
  assert.equal((await m.api("GET", "/api/v1/no-such-route", { token: root })).status, 404);
  const created = await m.api("POST", "/api/v1/jobs", {
    token: root,
    body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/nothing.bin" } },
  });
  assert.equal(created.status, 200);
  await waitFor("the job to fail", async () => (await m.api("GET", `/api/v1/jobs/${created.body.id}`, { token: root })).body.state === "FAILURE", 15_000);
  const s = await scrape(addr);
  assert.equal(metric(s, "damselfly_manager_http_requests_total", { route: "/api/v1/users/signin", method: "POST", status: "200" }), 1);
  assert.equal(metric(s, "damselfly_manager_http_requests_total", { route: "unmatched", status: "404" }), 1);
  assert.ok(metric(s, "damselfly_manager_http_request_duration_seconds_count") >= 3);
  assert.equal(metric(s, "damselfly_manager_jobs_total", { type: "preheat", state: "PENDING" }), 1);
  assert.equal(metric(s, "damselfly_manager_jobs_total", { type: "preheat", state: "FAILURE" }), 1);
  assert.ok(metric(s, "damselfly_process_resident_memory_bytes") > 0);
});
