// Manager + scheduler (--manager) + seed peer + peers, all real processes on
// 127.0.0.1: the scheduler registers and reports its hosts, daemons learn the
// scheduler from the manager, cluster config edits reach the running
// scheduler, and preheat jobs (open API with a personal access token, and the
// `damselfly preheat` CLI) put files into the swarm so later gets cost the
// origin nothing. Jobs outlive a manager restart.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { taskId } from "../../src/common/task-id.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { startManager, waitForJob, type ManagerHandle } from "../helpers/manager.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { runDamselfly } from "../helpers/procs.js";
import { getSummary, sha256File, sleep, storedMeta } from "../helpers/store.js";

const MiB = 1024 * 1024;

describe("manager with a live cluster", { timeout: 180_000 }, () => {
  let origin: Origin;
  let manager: ManagerHandle;
  let cluster: Cluster;
  let root: string;
  let pat: string;
  let outDir: string;

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-mgr-out-"));
    origin = await startOrigin();
    manager = await startManager();
    root = await manager.signin();
    cluster = await startCluster({
      peers: 2,
      seed: true,
      schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms", "--seed-wait", "1s"],
      daemonArgs: ["--announce-interval", "1s"],
    });
    const t = await manager.api("POST", "/api/v1/personal-access-tokens", {
      token: root,
      body: { name: "ci", scopes: ["job"], expired_at: new Date(Date.now() + 3_600_000).toISOString() },
    });
    assert.equal(t.status, 201);
    pat = t.body.token;
  });
  after(async () => {
    await cluster?.stop();
    await manager?.stop();
    await origin?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("the scheduler registers and keeps alive; the cluster's seed peer and peers are listed", async () => {
    const port = Number(cluster.scheduler.address.split(":")[1]);
    const schedulers = (await manager.api("GET", "/api/v1/schedulers", { token: root })).body as { port: number; state: string; cluster_id: number }[];
    const mine = schedulers.find((s) => s.port === port);
    assert.ok(mine, `scheduler on ${port} not registered: ${JSON.stringify(schedulers)}`);
    assert.equal(mine.state, "active");
    assert.equal(mine.cluster_id, 1);
    let listed: { hostname: string; type: string }[] = [];
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      listed = (await manager.api("GET", "/api/v1/scheduler-clusters/1/hosts", { token: root })).body;
      if (listed.length === 3) break;
      await sleep(200);
    }
    assert.deepEqual(listed.map((h) => `${h.hostname}:${h.type}`).sort(), ["peer-0:normal", "peer-1:normal", "seed:seed"]);
  });

  test("a daemon started with --manager takes its scheduler list from the manager", async () => {
    const d = await cluster.addDaemon({ name: "from-manager", args: ["--manager", manager.url] });
    const line = await d.proc.waitForLog("schedulers from the manager", 10_000);
    assert.deepEqual(line.schedulers, [cluster.scheduler.address]);
    const url = origin.url("/via-manager.bin");
    const data = origin.addRandomFile("/via-manager.bin", 2 * MiB, "vm");
    const r = await d.get([url, "-O", join(outDir, "via-manager.bin"), "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(outDir, "via-manager.bin")), sha256Hex(data));
    assert.notEqual(getSummary(r.stderr)?.fromPeers, "0 B", "the download went through the swarm (seed peer)");
  });

  test("file preheat through /oapi/v1/jobs with a personal access token: a later get costs the origin nothing", async () => {
    const path = "/preheat/file-16m.bin";
    const data = origin.addRandomFile(path, 16 * MiB, "preheat");
    const url = origin.url(path);
    const created = await manager.api("POST", "/oapi/v1/jobs", {
      token: pat,
      body: {
        type: "preheat",
        args: { type: "file", url, tag: "", filtered_query_params: "", headers: { "X-Test": "1" }, scope: "single_seed_peer", concurrent_count: 0, timeout: 0 },
        scheduler_cluster_ids: [1],
      },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal(typeof created.body.id, "number");
    assert.equal(created.body.state, "PENDING");
    assert.equal(created.body.args.headers, undefined, "headers are not echoed or stored");
    const job = await waitForJob(manager, pat, created.body.id);
    assert.equal(job.state, "SUCCESS", JSON.stringify(job));
    const result = job.result.job_states[0].results[0];
    assert.equal(result.scheduler_cluster_id, 1);
    assert.deepEqual(
      result.success_tasks.map((s: { hostname: string; url: string }) => [s.hostname, s.url]),
      [["seed", url]],
    );
    assert.deepEqual(result.failure_tasks, []);
    assert.equal(origin.bytesSent(path), data.length, "the seed peer fetched the file once");
    assert.equal(origin.requests.find((r) => r.path === path && r.method === "GET")?.headers["x-test"], "1", "the job's headers reached the origin");
    assert.ok(storedMeta(cluster.seed!.dataDir, taskId({ url }))?.done, "the seed holds the task under the get's task ID");

    const r = await cluster.peers[1]!.get([url, "-O", join(outDir, "preheated.bin"), "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(outDir, "preheated.bin")), sha256Hex(data));
    assert.equal(origin.bytesSent(path), data.length, "the get cost the origin nothing");
    assert.equal(getSummary(r.stderr)?.fromOrigin, "0 B");
  });

  test("damselfly preheat URL --scope all_peers: every host holds the file, the origin sent it once", async () => {
    const path = "/preheat/cli-8m.bin";
    const data = origin.addRandomFile(path, 8 * MiB, "cli");
    const url = origin.url(path);
    const r = await runDamselfly(["preheat", url, "--manager", manager.url, "--scope", "all_peers"], {
      env: { DAMSELFLY_PREHEAT_TOKEN: pat },
      timeoutMs: 60_000,
    });
    const out = r.stdout.toString();
    assert.equal(r.code, 0, r.stderr + out);
    assert.match(out, /SUCCESS/);
    assert.match(out, /cluster 1: 4 task\(s\) preheated, 0 failed/);
    const id = taskId({ url });
    for (const d of cluster.daemons) assert.ok(storedMeta(d.dataDir, id)?.done, `${d.name} holds the task`);
    assert.ok(origin.bytesSent(path) <= data.length * 1.1, `origin sent ${origin.bytesSent(path)} bytes`);
  });

  test("get_task lists the hosts holding a task; delete_task removes it from all of them", async () => {
    const path = "/preheat/cli-8m.bin";
    const url = origin.url(path);
    const id = taskId({ url });
    const get = await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "get_task", args: { url } } });
    assert.equal(get.status, 200, JSON.stringify(get.body));
    const listed = await waitForJob(manager, pat, get.body.id);
    assert.equal(listed.state, "SUCCESS", JSON.stringify(listed.result));
    const peers = listed.result.job_states[0].results[0].peers as { hostname: string; state: string; type: string }[];
    assert.equal(listed.result.job_states[0].results[0].task_id, id);
    assert.deepEqual(peers.map((p) => `${p.hostname}:${p.state}`).sort(), cluster.daemons.map((d) => `${d.name}:succeeded`).sort());

    const del = await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "delete_task", args: { task_id: id } } });
    const deleted = await waitForJob(manager, pat, del.body.id);
    assert.equal(deleted.state, "SUCCESS", JSON.stringify(deleted.result));
    assert.equal(deleted.result.job_states[0].results[0].success_tasks.length, cluster.daemons.length);
    for (const d of cluster.daemons) assert.equal(storedMeta(d.dataDir, id), undefined, `${d.name} still holds the task`);
    const again = await waitForJob(
      manager,
      pat,
      (await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "get_task", args: { task_id: id } } })).body.id,
    );
    assert.deepEqual(again.result.job_states[0].results[0].peers, []);
    // Gone for real: the next get goes back to the origin.
    const before = origin.bytesSent(path);
    const r = await cluster.peers[0]!.get([url, "-O", join(outDir, "after-delete.bin"), "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(origin.bytesSent(path) > before, "the deleted task was fetched from the origin again");
    // Bad task jobs are refused up front.
    assert.equal((await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "delete_task", args: {} } })).status, 400);
    assert.equal((await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "get_task", args: { task_id: "xyz" } } })).status, 400);
  });

  test("preheat failures: an origin 404 is a FAILURE with the reason; a token without the job scope is refused (exit 9)", async () => {
    const url = origin.url("/missing.bin");
    const created = await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "preheat", args: { type: "file", url } } });
    const job = await waitForJob(manager, pat, created.body.id);
    assert.equal(job.state, "FAILURE");
    const failed = job.result.job_states[0].results[0].failure_tasks;
    assert.equal(failed.length, 1);
    assert.equal(failed[0].hostname, "seed");
    assert.match(failed[0].description, /DF_ERR_SOURCE_STATUS/);

    const narrow = await manager.api("POST", "/api/v1/personal-access-tokens", {
      token: root,
      body: { name: "clusters-only", scopes: ["cluster"], expired_at: new Date(Date.now() + 60_000).toISOString() },
    });
    const jobsBefore = (await manager.api("GET", "/api/v1/jobs", { token: root })).body.length;
    const r = await runDamselfly(["preheat", origin.url("/preheat/cli-8m.bin"), "--manager", manager.url], {
      env: { DAMSELFLY_PREHEAT_TOKEN: narrow.body.token },
      timeoutMs: 20_000,
    });
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /DF_ERR_PERMISSION_DENIED/);
    assert.equal((await manager.api("GET", "/api/v1/jobs", { token: root })).body.length, jobsBefore, "no job was created");
  });

  test("cluster config edited in the manager reaches the running scheduler without a restart", async () => {
    // A second cluster without a seed peer: with backToSourceLimit 0 nobody
    // may fetch a cold task from the origin, so gets fail.
    const c2 = await manager.api("POST", "/api/v1/scheduler-clusters", { token: root, body: { name: "no-seed", config: { backToSourceLimit: 0 } } });
    assert.equal(c2.status, 201);
    const small = await startCluster({
      peers: 1,
      seed: false,
      schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms", "--cluster-id", String(c2.body.id), "--seed-wait", "500ms"],
    });
    try {
      const sched = small.scheduler.proc;
      const pid = sched.pid;
      const p = small.peers[0]!;
      await sched.waitForLog("cluster config applied", 5_000, (l) => (l.dynamic as { backToSourceLimit?: number })?.backToSourceLimit === 0);
      origin.addRandomFile("/limited.bin", 2 * MiB, "lim");
      // The scheduler refuses the origin fetch (the daemon then fetches it
      // itself: a get falls back to the origin when told the task failed).
      const FELL_BACK = "scheduler reported the task failed: fetching from the origin ourselves";
      const limited = await p.get([origin.url("/limited.bin"), "-O", join(outDir, "limited.bin"), "--no-progress"], { timeoutMs: 30_000 });
      assert.equal(limited.code, 0, limited.stderr);
      const refusal = await p.proc.waitForLog(FELL_BACK, 5_000);
      assert.equal(refusal.code, "DF_ERR_BACK_TO_SOURCE_LIMIT");
      // Back to the scheduler's own value: the same process serves it.
      assert.equal((await manager.api("PATCH", `/api/v1/scheduler-clusters/${c2.body.id}`, { token: root, body: { config: {} } })).status, 200);
      await sched.waitForLog("cluster config applied", 5_000, (l) => JSON.stringify(l.dynamic) === "{}");
      origin.addRandomFile("/allowed.bin", 2 * MiB, "ok");
      const ok = await p.get([origin.url("/allowed.bin"), "-O", join(outDir, "allowed.bin"), "--no-progress"], { timeoutMs: 30_000 });
      assert.equal(ok.code, 0, ok.stderr);
      // The scheduler itself sent the peer to the origin this time.
      assert.equal(p.proc.logs.filter((l) => l.msg === FELL_BACK).length, 1, "the scheduler allowed the origin fetch");
      assert.equal(sched.pid, pid);
      assert.ok(sched.running);
    } finally {
      await small.stop();
    }
    // A scheduler that shuts down says so: inactive at once, no jobs go there.
    const left = (await manager.api("GET", "/api/v1/schedulers", { token: root })).body.filter((x: { cluster_id: number }) => x.cluster_id === c2.body.id);
    assert.deepEqual(
      left.map((x: { state: string }) => x.state),
      ["inactive"],
    );
  });

  test("a daemon picks up schedulers that join its cluster later, without a restart", async () => {
    const c = await manager.api("POST", "/api/v1/scheduler-clusters", { token: root, body: { name: "late" } });
    const d = await cluster.addDaemon({
      name: "early",
      args: ["--manager", manager.url, "--cluster-id", String(c.body.id), "--scheduler", "127.0.0.1:1", "--manager-refresh", "300ms"],
    });
    await d.proc.waitForLog("the manager lists no active scheduler: using the static scheduler list", 10_000);
    const late = await startCluster({
      peers: 0,
      seed: false,
      schedulerArgs: ["--manager", manager.url, "--manager-interval", "300ms", "--cluster-id", String(c.body.id)],
    });
    try {
      const changed = await d.proc.waitForLog("scheduler list changed", 15_000);
      assert.deepEqual(changed.schedulers, [late.scheduler.address]);
      await late.scheduler.proc.waitForLog("host announced", 10_000, (l) => l.hostname === "early");
    } finally {
      await late.stop();
      await cluster.stopDaemon(d);
    }
  });

  test("jobs outlive a manager restart; a job cut short by it runs again, unless it carried credentials", async () => {
    const before = (await manager.api("GET", "/api/v1/jobs", { token: root })).body as { id: number; state: string; result: unknown }[];
    assert.ok(before.length >= 3);
    // Two preheats still running when the manager stops: the origin is slow.
    origin.addRandomFile("/slow/a.bin", 4 * MiB, "slow-a");
    origin.addRandomFile("/slow/b.bin", 4 * MiB, "slow-b");
    origin.setThrottle(1 * MiB);
    const plain = await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "preheat", args: { type: "file", url: origin.url("/slow/a.bin") } } });
    const secret = await manager.api("POST", "/oapi/v1/jobs", {
      token: pat,
      body: { type: "preheat", args: { type: "file", url: origin.url("/slow/b.bin"), headers: { Authorization: "Bearer origin-secret-xyz" } } },
    });
    const deadline = Date.now() + 10_000;
    while ((origin.requestCount("/slow/a.bin") === 0 || origin.requestCount("/slow/b.bin") === 0) && Date.now() < deadline) await sleep(50);
    const listen = new URL(manager.url).host;
    await manager.proc.stop("SIGTERM", 5_000);
    origin.setThrottle(undefined);
    const again = await startManager({ dataDir: manager.dataDir, database: manager.database, listen, adminPassword: "ignored-after-first-start" });
    try {
      const token = await again.signin("root", "test-admin-password-1");
      const after = (await again.api("GET", "/api/v1/jobs", { token })).body as { id: number; state: string; result: unknown }[];
      assert.deepEqual(
        after.filter((j) => before.some((b) => b.id === j.id)),
        before,
        "finished jobs are unchanged",
      );
      const resumed = await waitForJob(again, pat, plain.body.id);
      assert.equal(resumed.state, "SUCCESS", JSON.stringify(resumed.result));
      const refused = await waitForJob(again, pat, secret.body.id);
      assert.equal(refused.state, "FAILURE");
      assert.match(refused.result.job_states[0].error, /credentials are never stored/);
      // The credentials never reached the database.
      const { readFileSync, readdirSync } = await import("node:fs");
      for (const f of readdirSync(manager.dataDir).filter((n) => n.startsWith("manager.db"))) {
        assert.ok(!readFileSync(join(manager.dataDir, f)).toString("latin1").includes("origin-secret-xyz"), `${f} holds the job's credentials`);
      }
      const schedulers = (await again.api("GET", "/api/v1/schedulers", { token })).body;
      assert.equal(schedulers.length, 3);
    } finally {
      await again.stop();
    }
  });
});
