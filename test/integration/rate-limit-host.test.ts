// Host-wide rate limits on real processes: a seed peer's upload cap holds
// while three peers pull from it (measured at the receivers), and a preheat
// running beside a real-time `get` on a host with a download cap gets only
// the bandwidth the `get` leaves. Limits are checked by accounting
// (test/helpers/rate.ts): bytes over the daemons' own account of the time.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createRpcTransport, DownloadSchema, schedulerv1 } from "../../src/protocol/index.js";
import { taskId } from "../../src/common/task-id.js";
import { formatBytes } from "../../src/cli/format.js";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { explained, getSummary, sha256File, sleep, storedPieces, tempDir } from "../helpers/store.js";
import type { LogLine } from "../helpers/procs.js";
import { assertHeldTo, MiB, minSeconds } from "../helpers/rate.js";

// [start, end] in epoch ms of the last "download served" of a daemon, from
// its own log line (pino's time is when the download ended).
function servedWindow(d: DaemonHandle): [number, number] {
  const line = [...d.proc.logs].reverse().find((l: LogLine) => l.msg === "download served");
  assert.ok(line, `${d.name} logged no "download served"`);
  const end = Date.parse(String(line.time));
  return [end - Number(line.ms), end];
}

describe("host rate limits", { timeout: 120_000 }, () => {
  test("a seed's 8 MiB/s upload cap holds while three peers pull from it", { timeout: 60_000 }, async (t) => {
    const dir = tempDir(t, "damselfly-ratelimit-up-");
    const origin = await startOrigin();
    t.after(() => origin.close());
    const cluster = await startCluster({ peers: 3, seed: false, t });
    const seed = await cluster.addDaemon({ seed: true, name: "seed", args: ["--total-upload-rate-limit", "8MiB"] });
    // A file per receiver, held by the seed alone: receivers cannot feed each
    // other, so every byte they get crossed the seed's capped uplink.
    const SIZE = 16 * MiB;
    const files = cluster.peers.map((_, i) => {
      const data = origin.addRandomFile(`/up/${i}.bin`, SIZE, `up-${i}`);
      return { url: origin.url(`/up/${i}.bin`), sha: sha256Hex(data) };
    });
    for (const [i, f] of files.entries()) {
      const r = await seed.get([f.url, "-O", join(dir, `seed-${i}.bin`), "--no-progress"], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
    }
    const results = await Promise.all(
      cluster.peers.map((p, i) => explained(p.get([files[i]!.url, "-O", join(dir, `out-${i}.bin`), "--no-progress"], { timeoutMs: 40_000 }), p, seed)),
    );
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256File(join(dir, `out-${i}.bin`)), files[i]!.sha);
      const s = getSummary(r.stderr);
      assert.equal(s?.fromPeers, formatBytes(SIZE), r.stderr);
      t.diagnostic(s?.line ?? r.stderr);
    }
    // At the receivers: all their bytes over the time from the first one's
    // start to the last one's end.
    const windows = cluster.peers.map(servedWindow);
    const start = Math.min(...windows.map((w) => w[0]));
    const end = Math.max(...windows.map((w) => w[1]));
    const rate = (3 * SIZE) / ((end - start) / 1000);
    t.diagnostic(`3 x 16 MiB from one parent capped at 8 MiB/s: ${((end - start) / 1000).toFixed(2)} s, ${(rate / MiB).toFixed(2)} MiB/s at the receivers`);
    assertHeldTo(3 * SIZE, end - start, 8 * MiB, "the seed's --total-upload-rate-limit 8MiB, at the receivers");
  });

  test("a preheat beside a real-time get on a capped host gets only the leftover", { timeout: 60_000 }, async (t) => {
    const dir = tempDir(t, "damselfly-ratelimit-pre-");
    const origin = await startOrigin();
    t.after(() => origin.close());
    const CAP = 16 * MiB;
    const cluster = await startCluster({
      peers: 1,
      seed: false,
      t,
      schedulerArgs: ["--cold-start", "peer"],
      daemonArgs: ["--total-download-rate-limit", "16MiB"],
    });
    const peer = cluster.peers[0]!;
    origin.addRandomFile("/pre/background.bin", 64 * MiB, "pre-bg");
    const rtData = origin.addRandomFile("/pre/realtime.bin", 32 * MiB, "pre-rt");
    const bgUrl = origin.url("/pre/background.bin");
    const bgId = taskId({ url: bgUrl });

    const sched = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
    const preheatStarted = Date.now();
    const preheat = sched.preheatTask(
      { download: create(DownloadSchema, { url: bgUrl }), scope: schedulerv1.PreheatScope.ALL_PEERS, timeoutMs: 60_000n },
      { timeoutMs: 60_000 },
    );
    preheat.catch(() => undefined);
    // Alone, the preheat has the whole cap.
    const deadline = Date.now() + 10_000;
    while (storedPieces(peer.dataDir, bgId).size < 8 && Date.now() < deadline) await sleep(50);
    assert.ok(storedPieces(peer.dataDir, bgId).size >= 8, "the preheat did not start");

    // The preheat's progress, sampled: pieces stored by each moment.
    const samples: Array<[number, number]> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push([Date.now(), storedPieces(peer.dataDir, bgId).size]);
        await sleep(25);
      }
    })();
    const r = await explained(peer.get([origin.url("/pre/realtime.bin"), "-O", join(dir, "rt.bin"), "--no-progress"], { timeoutMs: 30_000 }), peer);
    sampling = false;
    await sampler;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(dir, "rt.bin")), sha256Hex(rtData));
    const [s, e] = servedWindow(peer);
    const seconds = (e - s) / 1000;
    const sampleAt = (at: number) => samples.filter(([when]) => when <= at).pop() ?? [preheatStarted, 0];
    // Pieces are 512 KiB.
    const bgDuring = (sampleAt(e)[1] - sampleAt(s)[1]) * 512 * 1024;
    // A sampler that stalled under load last looked before the get started:
    // in that gap the preheat could take at most the host's cap.
    const staleSlack = (CAP * (s - sampleAt(s)[0])) / 1000;
    t.diagnostic(
      `real-time: 32 MiB in ${seconds.toFixed(2)} s (${(32 / seconds).toFixed(2)} MiB/s of a 16 MiB/s cap); preheat meanwhile: ${(bgDuring / MiB).toFixed(1)} MiB`,
    );
    // The get is held to the host's cap; the preheat gets only what the get
    // leaves: a small share of the bytes, whatever the pace.
    assertHeldTo(32 * MiB, e - s, CAP, "the get under --total-download-rate-limit 16MiB");
    assert.ok(
      bgDuring <= 0.15 * 32 * MiB + MiB + staleSlack,
      `the preheat took ${(bgDuring / MiB).toFixed(1)} MiB while the real-time get moved 32 MiB (sampler ${s - sampleAt(s)[0]} ms stale)`,
    );

    const res = await preheat;
    assert.ok(
      res.results.every((x) => x.success),
      JSON.stringify(res.results),
    );
    const total = Date.now() - preheatStarted;
    t.diagnostic(`preheat of 64 MiB done after ${(total / 1000).toFixed(2)} s (96 MiB through a 16 MiB/s cap: >= ${minSeconds(96 * MiB, CAP).toFixed(2)} s)`);
    assertHeldTo(96 * MiB, total, CAP, "the preheat and the get under --total-download-rate-limit 16MiB");
  });
});
