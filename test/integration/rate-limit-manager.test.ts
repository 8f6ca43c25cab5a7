// Rate limits as part of a cluster's dynamic config in the manager: a daemon
// started with --manager and --cluster-id takes them at start and follows a
// change while a download runs, without a restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startManager } from "../helpers/manager.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { explained, sha256File, sleep, storedPieces, tempDir } from "../helpers/store.js";
import { taskId } from "../../src/common/task-id.js";

const MiB = 1024 * 1024;

test("the manager's cluster config sets a daemon's rate limits, live", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, "damselfly-ratelimit-mgr-");
  const origin = await startOrigin();
  t.after(() => origin.close());
  const manager = await startManager({ t });
  const root = await manager.signin();
  const patch = (config: Record<string, number>) => manager.api("PATCH", "/api/v1/scheduler-clusters/1", { token: root, body: { config } });

  assert.equal((await patch({ perTaskRateLimit: -1 })).status, 400, "a negative rate is refused");
  assert.equal((await patch({ perTaskRateLimit: 8 * MiB })).status, 200);

  const cluster = await startCluster({ peers: 0, seed: false, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "300ms", "--cold-start", "peer"] });
  await cluster.scheduler.proc.waitForLog("cluster config applied", 10_000);
  const peer = await cluster.addDaemon({ name: "peer", args: ["--manager", manager.url, "--cluster-id", "1", "--manager-refresh", "300ms"] });
  const first = await peer.proc.waitForLog("rate limits applied", 10_000);
  assert.equal(first.perTaskRateLimit, 8 * MiB);
  assert.equal(first.totalDownloadRateLimit, 0, "keys the cluster does not set keep the daemon's own value");

  // 40 MiB at 8 MiB/s would take 5 s; after ~1 s the limit goes to 32 MiB/s.
  const data = origin.addRandomFile("/mgr/a.bin", 40 * MiB, "mgr-a");
  const url = origin.url("/mgr/a.bin");
  const id = taskId({ url });
  const started = Date.now();
  const get = explained(peer.get([url, "-O", join(dir, "a.bin"), "--no-progress"], { timeoutMs: 30_000 }), peer);
  const deadline = Date.now() + 10_000;
  while (storedPieces(peer.dataDir, id).size < 12 && Date.now() < deadline) await sleep(50);
  const slowPhase = (Date.now() - started) / 1000;
  // 12 pieces of 512 KiB = 6 MiB: about 0.75 s at 8 MiB/s (less its 0.1 s burst).
  assert.ok(slowPhase > 0.5, `6 MiB arrived in ${slowPhase.toFixed(2)} s: the 8 MiB/s limit from the manager did not apply`);
  assert.equal((await patch({ perTaskRateLimit: 32 * MiB })).status, 200);
  const second = await peer.proc.waitForLog("rate limits applied", 10_000, (l) => l.perTaskRateLimit === 32 * MiB);
  assert.ok(second);
  const r = await get;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await sha256File(join(dir, "a.bin")), sha256Hex(data));
  const total = (Date.now() - started) / 1000;
  t.diagnostic(`6 MiB at 8 MiB/s in ${slowPhase.toFixed(2)} s, all 40 MiB in ${total.toFixed(2)} s (5 s without the change)`);
  assert.ok(total < 4, `the running download did not speed up: 40 MiB took ${total.toFixed(2)} s`);
  assert.equal(peer.proc.exitCode, null, "the daemon kept running");
});
