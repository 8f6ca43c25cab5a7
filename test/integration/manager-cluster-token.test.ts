// With DAMSELFLY_CLUSTER_TOKEN set, the component RPCs that change the
// cluster or tell about it need it: a scheduler without it cannot register,
// nobody without it can list schedulers, run preheat or delete tasks through
// a scheduler, or delete a task on a daemon; with it, preheat works end to end.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { blobDownload, createManagerTransport, createRpcTransport, daemonv1, managerv1, schedulerv1 } from "../../src/protocol/index.js";
import { startCluster } from "../helpers/cluster.js";
import { codeOf } from "../helpers/rpc-code.js";
import { startManager, waitForJob } from "../helpers/manager.js";
import { startOrigin } from "../helpers/origin.js";

const TOKEN = "cluster-secret-for-tests-0123456789";

test("the cluster token guards registration, scheduler lists, preheat/delete RPCs; with it preheat works", { timeout: 90_000 }, async (t) => {
  const origin = await startOrigin();
  t.after(() => origin.close());
  origin.addRandomFile("/tok.bin", 2 * 1024 * 1024, "tok");
  const manager = await startManager({ t, env: { DAMSELFLY_CLUSTER_TOKEN: TOKEN } });
  const root = await manager.signin();

  // Wrong token: the scheduler runs, but the manager refuses it.
  const wrong = await startCluster({
    peers: 0,
    seed: false,
    t,
    env: { DAMSELFLY_CLUSTER_TOKEN: "wrong" },
    schedulerArgs: ["--manager", manager.url, "--manager-interval", "300ms"],
  });
  const refused = await wrong.scheduler.proc.waitForLog("manager keep-alive failed: keeping the current config", 10_000);
  assert.equal(refused.code, "DF_ERR_UNAUTHENTICATED");
  assert.deepEqual((await manager.api("GET", "/api/v1/schedulers", { token: root })).body, []);
  await wrong.stop();

  const cluster = await startCluster({
    peers: 1,
    t,
    env: { DAMSELFLY_CLUSTER_TOKEN: TOKEN },
    schedulerArgs: ["--manager", manager.url, "--manager-interval", "300ms"],
  });
  await cluster.scheduler.proc.waitForLog("cluster config applied", 10_000);

  const mgr = createClient(managerv1.ManagerService, createManagerTransport(manager.url));
  assert.equal(await codeOf(mgr.listSchedulers({})), "DF_ERR_UNAUTHENTICATED");
  assert.equal(await codeOf(mgr.keepAliveScheduler({ clusterId: 1n, hostname: "evil", ip: "10.9.9.9", port: 1 })), "DF_ERR_UNAUTHENTICATED");
  const listed = await mgr.listSchedulers({}, { headers: { "x-damselfly-cluster-token": TOKEN } });
  assert.equal(listed.schedulers.length, 1);

  const sched = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
  const download = blobDownload({ url: origin.url("/tok.bin"), headers: {} });
  assert.equal(await codeOf(sched.preheatTask({ download, scope: schedulerv1.PreheatScope.ALL_PEERS })), "DF_ERR_UNAUTHENTICATED");
  assert.equal(await codeOf(sched.deleteTask({ taskId: "a".repeat(64) })), "DF_ERR_UNAUTHENTICATED");
  assert.equal(origin.bytesSent("/tok.bin"), 0);
  const daemon = createClient(daemonv1.DaemonService, createRpcTransport(cluster.seed!.apiUrl));
  assert.equal(await codeOf(daemon.deleteTask({ taskId: "a".repeat(64) })), "DF_ERR_UNAUTHENTICATED");

  // The manager, holding the token, preheats through the scheduler.
  const pat = (
    await manager.api("POST", "/api/v1/personal-access-tokens", {
      token: root,
      body: { name: "t", scopes: ["job"], expired_at: new Date(Date.now() + 600_000).toISOString() },
    })
  ).body.token;
  const job = await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "preheat", args: { type: "file", url: origin.url("/tok.bin") } } });
  const done = await waitForJob(manager, pat, job.body.id);
  assert.equal(done.state, "SUCCESS", JSON.stringify(done.result));
  assert.equal(origin.bytesSent("/tok.bin"), 2 * 1024 * 1024);
});
