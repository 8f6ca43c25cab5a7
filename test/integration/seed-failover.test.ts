// Two seed peers on the ring; the one fetching a cold task from the origin is
// killed (SIGKILL) at about 30% of it. The scheduler must notice (its own
// check of the host its children report, not their word), give the task to
// the other seed, which takes the pieces the swarm holds and only the rest
// from the origin: every peer finishes with the origin's bytes, and the
// origin sends at most 1.3x the file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pieceLengthFor } from "../../src/common/pieces.js";
import { taskId } from "../../src/common/task-id.js";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { explained, getSummary, logTail, pollUntil, sha256File, storedPieces, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const PIECES = SIZE / pieceLengthFor(SIZE);

test("the seed fetching a cold task dies at 30%: the next seed takes over from the swarm's pieces", { timeout: 180_000 }, async (t) => {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const out = tempDir(t, "damselfly-seed-failover-");
  // About 6 s for the whole file from the origin.
  const data = origin.addRandomFile("/seed-failover.bin", SIZE, "seed-failover", { throttle: SIZE / 6 });
  const expected = sha256Hex(data);
  const url = origin.url("/seed-failover.bin");
  const id = taskId({ url });
  const cluster = await startCluster({ peers: 3, seed: true, t, logLevel: process.env.DF_TEST_LOG ?? "info" });
  const second = await cluster.addDaemon({ seed: true, name: "seed-b" });
  const seeds = [cluster.seed!, second];

  const runs = cluster.peers.map((p) => explained(p.get([url, "-O", join(out, `${p.name}.bin`), "--no-progress"], { timeoutMs: 120_000 }), ...cluster.daemons));
  for (const r of runs) r.catch(() => undefined);
  const fetching = await pollUntil(() => seeds.find((s) => storedPieces(s.dataDir, id).size > 0), "a seed fetching the task", 30_000);
  const other = seeds.find((s) => s !== fetching)!;
  await pollUntil(() => storedPieces(fetching.dataDir, id).size >= Math.round(0.3 * PIECES), "30% of the task at the seed", 30_000);
  const had = storedPieces(fetching.dataDir, id).size;
  await cluster.stopDaemon(fetching, "SIGKILL");

  const results = await Promise.all(runs);
  for (const [i, r] of results.entries()) {
    const peer = cluster.peers[i] as DaemonHandle;
    assert.equal(r.code, 0, `${r.stderr}\n${cluster.daemons.map((d) => logTail(d)).join("\n")}`);
    assert.equal(await sha256File(join(out, `${peer.name}.bin`)), expected, `${peer.name}'s copy differs from the origin's bytes`);
  }
  const sent = origin.bytesSent("/seed-failover.bin");
  t.diagnostic(`the killed seed had ${had}/${PIECES} pieces; the origin sent ${(sent / MiB).toFixed(1)} MiB for ${SIZE / MiB} MiB`);
  for (const r of results) t.diagnostic(getSummary(r.stderr)?.line ?? "");
  if (process.env.DF_TEST_LOG) for (const d of [other, cluster.peers[0]!, { name: "scheduler", proc: cluster.scheduler.proc }]) t.diagnostic(logTail(d, 80));
  assert.ok(
    other.proc.logs.some((l) => l.msg === "fetching from the origin" && l.taskId === id),
    `the other seed should have taken the task over\n${logTail(cluster.peers[0]!, 60)}\n${logTail(other, 40)}\n${logTail({ name: "scheduler", proc: cluster.scheduler.proc }, 40)}`,
  );
  // It took what the peers held, and only the rest from the origin.
  const took = other.proc.logs.find((l) => l.msg === "task downloaded" && l.taskId === id);
  assert.ok(took && Number(took.bytesFromPeers) > 0 && Number(took.bytesFromSource) < SIZE, `the other seed's download: ${JSON.stringify(took)}`);
  assert.ok(sent <= 1.3 * SIZE, `the origin sent ${(sent / MiB).toFixed(1)} MiB for a ${SIZE / MiB} MiB file`);
});
