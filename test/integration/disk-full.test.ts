// A daemon whose store runs out of space fails the download with a clear
// storage error (exit 8), leaves no output behind, and keeps working for
// files that fit; no partial task stays behind looking complete or offered as
// a parent; once space is freed the same download succeeds; and when its own
// idle tasks are what fills the disk, the daemon evicts them to make room.
// The stores are tmpfs mounts this test makes (root only).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { createClient } from "@connectrpc/connect";
import { taskId } from "../../src/common/task-id.js";
import { createRpcTransport, daemonv1, schedulerv1 } from "../../src/protocol/index.js";
import { getSummary, sha256File, taskDir } from "../helpers/store.js";
import { tmpfsStore } from "../helpers/tmpfs.js";

const MiB = 1024 * 1024;

test("a full disk fails the download with DF_ERR_STORAGE_FULL and no output; smaller files still work", { timeout: 90_000 }, async (t) => {
  const mounted = tmpfsStore(t, "damselfly-full-", "16m");
  if (!mounted) return;
  const { root, store } = mounted;
  const origin = await startOrigin();
  t.after(() => origin.close());
  origin.addRandomFile("/full/big.bin", 40 * MiB, "big");
  const small = origin.addRandomFile("/full/small.bin", 3 * MiB, "small");
  const cluster = await startCluster({ peers: 0, seed: false, t, dataRoot: join(root, "daemons") });
  const daemon = await cluster.addDaemon({ name: "tiny", dataDir: store });
  const outDir = join(root, "out");
  mkdirSync(outDir);

  const big = await daemon.get([origin.url("/full/big.bin"), "-O", join(outDir, "big.bin"), "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(big.code, 8, big.stderr);
  assert.match(big.stderr, /^damselfly get: DF_ERR_STORAGE_FULL: no space left on device: /m);
  assert.equal(existsSync(join(outDir, "big.bin")), false);
  assert.deepEqual(readdirSync(outDir), []);

  const ok = await daemon.get([origin.url("/full/small.bin"), "-O", join(outDir, "small.bin"), "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await sha256File(join(outDir, "small.bin")), sha256Hex(small));
});

test("after a full disk: no partial task is kept or offered, freeing space lets the same download succeed, and idle tasks are evicted to make room", {
  timeout: 120_000,
}, async (t) => {
  const mounted = tmpfsStore(t, "damselfly-full2-", "48m");
  if (!mounted) return;
  const { root, store } = mounted;
  const origin = await startOrigin();
  t.after(() => origin.close());
  const bigData = origin.addRandomFile("/full2/big.bin", 24 * MiB, "big2");
  const big2Data = origin.addRandomFile("/full2/big2.bin", 20 * MiB, "big2b");
  const bigId = taskId({ url: origin.url("/full2/big.bin") });
  const cluster = await startCluster({ peers: 0, seed: false, t, dataRoot: join(root, "daemons"), schedulerArgs: ["--cold-start", "peer"] });
  const scheduler = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
  const holders = async (id: string) => (await scheduler.listTaskPeers({ taskId: id })).peers.map((p) => p.hostname).sort();
  // Someone else's 30 MiB in the data dir's filesystem: 18 MiB left.
  const filler = join(store, "filler.bin");
  writeFileSync(filler, Buffer.alloc(30 * MiB, 7));
  const tiny = await cluster.addDaemon({ name: "tiny2", dataDir: store, args: ["--gc-interval", "0"] });
  const api = createClient(daemonv1.DaemonService, createRpcTransport(tiny.apiUrl));
  const outDir = join(root, "out");
  mkdirSync(outDir);
  const out = join(outDir, "big.bin");

  const full = await tiny.get([origin.url("/full2/big.bin"), "-O", out, "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(full.code, 8, full.stderr);
  assert.match(full.stderr, /^damselfly get: DF_ERR_STORAGE_FULL: /m);
  assert.deepEqual(readdirSync(outDir), []);
  // Nothing of the failed task is left to look complete, nor offered to others
  // (the daemon removes it right after the failure reaches the client).
  for (let i = 0; ; i++) {
    const listed = (await api.listTasks({})).tasks;
    assert.ok(
      listed.every((x) => x.state !== "done"),
      "a failed task never looks complete",
    );
    if (listed.length === 0 && !existsSync(join(taskDir(store, bigId), "data"))) break;
    assert.ok(i < 100, "the failed task's files should be removed");
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(await holders(bigId), []);
  // Only idle Damselfly tasks could have been evicted to make room: there were none, and the filler is untouched.
  assert.ok(readFileSync(filler).equals(Buffer.alloc(30 * MiB, 7)));

  // Another node fetches it from the origin: tiny was never its parent.
  const other = await cluster.addDaemon({ name: "other" });
  const o = await other.get([origin.url("/full2/big.bin"), "-O", join(root, "other-big.bin"), "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(o.code, 0, o.stderr);
  assert.equal(getSummary(o.stderr)?.fromPeers, "0 B", o.stderr);
  assert.equal(await sha256File(join(root, "other-big.bin")), sha256Hex(bigData));

  // Space freed: the same download now succeeds.
  unlinkSync(filler);
  const again = await tiny.get([origin.url("/full2/big.bin"), "-O", out, "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(await sha256File(out), sha256Hex(bigData));
  assert.deepEqual(await holders(bigId), ["other", "tiny2"]);
  rmSync(out);

  // The disk fills with tiny's own idle task: it is evicted to make room for the new one.
  const filler2 = join(store, "filler2.bin");
  writeFileSync(filler2, Buffer.alloc(12 * MiB, 9));
  for (let i = 0; (await api.listTasks({})).tasks.some((x) => x.inUse > 0); i++) {
    assert.ok(i < 100, "big.bin should be released after its get");
    await new Promise((r) => setTimeout(r, 100));
  }
  const out2 = join(outDir, "big2.bin");
  const r2 = await tiny.get([origin.url("/full2/big2.bin"), "-O", out2, "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(await sha256File(out2), sha256Hex(big2Data));
  const listed = await api.listTasks({});
  assert.deepEqual(
    listed.tasks.map((x) => [x.url, x.state]),
    [[origin.url("/full2/big2.bin"), "done"]],
  );
  const line = await tiny.proc.waitForLog("disk gc pass", 5_000, (l) => l.reason === "make-room");
  assert.equal(line.tasks, 1);
  assert.ok(readFileSync(filler2).equals(Buffer.alloc(12 * MiB, 9)), "the foreign file is untouched");
  assert.deepEqual(await holders(bigId), ["other"], "the scheduler no longer sends anyone to tiny for the evicted task");
});
