// Rate limits as part of a cluster's dynamic config in the manager: a daemon
// started with --manager and --cluster-id takes them at start and follows a
// change while a download runs, without a restart. Checked by accounting
// (test/helpers/rate.ts): bytes moved against what each limit grants.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startManager } from "../helpers/manager.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { explained, sha256File, sleep, storedPieces, tempDir } from "../helpers/store.js";
import { assertBeyond, assertHeldTo, MiB } from "../helpers/rate.js";
import { taskId } from "../../src/common/task-id.js";
import type { LogLine } from "../helpers/procs.js";

test("the manager's cluster config sets a daemon's rate limits, live", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, "damselfly-ratelimit-mgr-");
  const origin = await startOrigin();
  t.after(() => origin.close());
  const manager = await startManager({ t });
  const root = await manager.signin();
  const patch = (config: Record<string, number>) => manager.api("PATCH", "/api/v1/scheduler-clusters/1", { token: root, body: { config } });

  assert.equal((await patch({ perTaskRateLimit: -1 })).status, 400, "a negative rate is refused");
  assert.equal((await patch({ perTaskRateLimit: 8 * MiB })).status, 200);

  const cluster = await startCluster({
    peers: 0,
    seed: false,
    t,
    schedulerArgs: ["--manager", manager.url, "--manager-interval", "300ms", "--cold-start", "peer"],
  });
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
  // 12 pieces of 512 KiB = 6 MiB, counted from before the get started.
  const slowPhase = Date.now() - started;
  assertHeldTo(12 * 512 * 1024, slowPhase, 8 * MiB, "perTaskRateLimit 8MiB from the manager");
  assert.equal((await patch({ perTaskRateLimit: 32 * MiB })).status, 200);
  const second = await peer.proc.waitForLog("rate limits applied", 10_000, (l) => l.perTaskRateLimit === 32 * MiB);
  assert.ok(second);
  // The new limit applied by now: what was not stored yet moved after.
  const changed = Date.now();
  const left = 40 * MiB - storedPieces(peer.dataDir, id).size * 512 * 1024;
  const r = await get;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await sha256File(join(dir, "a.bin")), sha256Hex(data));
  const served = [...peer.proc.logs].reverse().find((l: LogLine) => l.msg === "download served");
  assert.ok(served, 'no "download served"');
  const end = Date.parse(String(served.time));
  t.diagnostic(
    `6 MiB at 8 MiB/s in ${(slowPhase / 1000).toFixed(2)} s; the last ${(left / MiB).toFixed(1)} MiB in ${((end - changed) / 1000).toFixed(2)} s after the change`,
  );
  // Pieces in flight at the change may have been read before it: up to a
  // few MiB of slack.
  assertBeyond(left, end - changed, 8 * MiB, "the running download follows perTaskRateLimit 32MiB", 4 * MiB);
  assert.equal(peer.proc.exitCode, null, "the daemon kept running");
});
