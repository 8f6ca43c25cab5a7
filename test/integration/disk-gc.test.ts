// The daemon's disk GC and `damselfly cache`, against real daemons and a real
// scheduler: least recently used tasks go first once Damselfly's own files pass
// the high watermark (and the order survives a restart), tasks being
// downloaded, read or uploaded are never evicted (and are released when
// their client goes away), files that are not Damselfly's are
// neither counted nor touched, expired tasks go by themselves, and the
// scheduler stops offering an evicted task's host as a parent.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { taskId } from "../../src/common/task-id.js";
import { createRpcTransport, daemonv1, fromConnectError, schedulerv1 } from "../../src/protocol/index.js";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { spawn } from "node:child_process";
import { BIN_DAMSELFLY, childEnv, runDamselfly, type RunResult } from "../helpers/procs.js";
import { sha256File, sleep, taskDir } from "../helpers/store.js";

const MiB = 1024 * 1024;

interface ListedTask {
  taskId: string;
  url: string;
  state: string;
  inUse: number;
  diskBytes: number;
  lastAccessMs: number;
  finishedPieces: number;
  totalPieces: number;
}
interface Listing {
  diskBytes: number;
  tasks: ListedTask[];
}

function cache(d: DaemonHandle, ...args: string[]): Promise<RunResult> {
  return runDamselfly(["cache", ...args, "--daemon", d.apiUrl], { timeoutMs: 30_000 });
}

// The same API the CLI uses, in-process: fast enough to look while a
// download is still running.
function api(d: DaemonHandle) {
  return createClient(daemonv1.DaemonService, createRpcTransport(d.apiUrl));
}

async function list(d: DaemonHandle): Promise<Listing> {
  const r = await api(d).listTasks({});
  return {
    diskBytes: Number(r.diskBytes),
    tasks: r.tasks.map((t) => ({
      taskId: t.taskId,
      url: t.url,
      state: t.state,
      inUse: t.inUse,
      diskBytes: Number(t.diskBytes),
      lastAccessMs: Number(t.lastAccessMs),
      finishedPieces: t.finishedPieces,
      totalPieces: t.totalPieces,
    })),
  };
}

async function cliList(d: DaemonHandle): Promise<Listing> {
  const r = await cache(d, "list", "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout.toString()) as Listing;
}

async function prune(d: DaemonHandle, ...args: string[]): Promise<string[]> {
  const r = await cache(d, "prune", ...args);
  assert.equal(r.code, 0, r.stderr);
  return [...r.stdout.toString().matchAll(/^removed ([0-9a-f]{64})$/gm)].map((m) => m[1]!);
}

// Waits until nothing holds the tasks (a finished `get` keeps its task for
// a moment while it links the data file).
async function idle(d: DaemonHandle, ids: string[]): Promise<Listing> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const l = await list(d);
    if (ids.every((id) => l.tasks.find((t) => t.taskId === id)?.inUse === 0)) return l;
    if (Date.now() > deadline) throw new Error(`tasks still in use: ${JSON.stringify(l.tasks)}`);
    await sleep(100);
  }
}

async function fetch(d: DaemonHandle, origin: Origin, path: string, out: string, extra: string[] = []): Promise<void> {
  const r = await d.get([origin.url(path), "-O", out, "--no-progress", ...extra], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
}

async function schedulerHolders(cluster: Cluster, id: string): Promise<string[]> {
  const s = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
  const r = await s.listTaskPeers({ taskId: id });
  return r.peers.map((p) => p.hostname);
}

const gcArgs = (high: string, low: string, ttl = "0", interval = "0") => [
  "--disk-gc-high-watermark",
  high,
  "--disk-gc-low-watermark",
  low,
  "--task-ttl",
  ttl,
  "--gc-interval",
  interval,
];

describe("disk GC", { timeout: 150_000 }, () => {
  let cluster: Cluster;
  let origin: Origin;
  let out: string;

  before(async () => {
    origin = await startOrigin();
    cluster = await startCluster({ peers: 0, seed: false, schedulerArgs: ["--cold-start", "peer"] });
    out = mkdtempSync(join(tmpdir(), "damselfly-gc-out-"));
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  test("over the high watermark, least recently used tasks go first down to the low one; the order survives a restart", async () => {
    const ids: string[] = [];
    const files: Buffer[] = [];
    for (const n of [1, 2, 3, 4]) {
      files.push(origin.addRandomFile(`/lru/f${n}.bin`, 3 * MiB, `lru${n}`));
      ids.push(taskId({ url: origin.url(`/lru/f${n}.bin`) }));
    }
    let d = await cluster.addDaemon({ name: "lru", args: gcArgs("10MiB", "7MiB") });
    for (const n of [1, 2, 3, 4]) await fetch(d, origin, `/lru/f${n}.bin`, join(out, `lru${n}.bin`));
    // f1 is read again: now the most recently used.
    await fetch(d, origin, "/lru/f1.bin", join(out, "lru1-again.bin"));
    await idle(d, ids);
    const before = await cliList(d);
    assert.equal(before.tasks.length, 4);
    assert.ok(before.diskBytes >= 12 * MiB && before.diskBytes < 12.5 * MiB, `usage ${before.diskBytes}`);
    assert.deepEqual(
      before.tasks.map((t) => t.taskId),
      [ids[1], ids[2], ids[3], ids[0]],
      "listed least recently used first",
    );

    // A restart keeps the access times (written to task.json).
    await cluster.stopDaemon(d);
    d = await cluster.addDaemon({ name: "lru-2", dataDir: d.dataDir, args: gcArgs("10MiB", "7MiB") });
    assert.deepEqual(await schedulerHolders(cluster, ids[1]!), ["lru-2"]);

    const evicted = await prune(d);
    assert.deepEqual(evicted, [ids[1], ids[2]], "f2 then f3: the oldest accesses, until under 7 MiB");
    const after = await list(d);
    assert.deepEqual(after.tasks.map((t) => t.taskId).sort(), [ids[0], ids[3]].sort());
    assert.ok(after.diskBytes <= 7 * MiB, `usage after ${after.diskBytes}`);
    for (const id of [ids[1]!, ids[2]!]) assert.equal(existsSync(taskDir(d.dataDir, id)), false, "evicted task's files are gone");
    const line = await d.proc.waitForLog("disk gc pass", 5_000, (l) => l.reason === "prune");
    assert.equal(line.tasks, 2);
    assert.ok((line.bytesFreed as number) >= 6 * MiB, `freed ${String(line.bytesFreed)}`);
    // The scheduler no longer offers this host for the evicted tasks.
    assert.deepEqual(await schedulerHolders(cluster, ids[1]!), []);
    assert.deepEqual(await schedulerHolders(cluster, ids[0]!), ["lru-2"]);
    // Outputs made before are the user's: untouched.
    assert.equal(await sha256File(join(out, "lru2.bin")), sha256Hex(files[1]!));
  });

  test("a task being downloaded, read or uploaded is not evicted, even over the watermark or with prune --all", async () => {
    const d = await cluster.addDaemon({ name: "busy", args: gcArgs("4MiB", "2MiB") });
    // 16 MiB in one piece: a child that stops reading holds the upload.
    origin.addRandomFile("/busy/up.bin", 16 * MiB, "up");
    const up = taskId({ url: origin.url("/busy/up.bin"), pieceLength: 16 * MiB });
    await fetch(d, origin, "/busy/up.bin", join(out, "up.bin"), ["--piece-length", "16MiB"]);
    await idle(d, [up]);
    const [host, port] = d.upload.split(":") as [string, string];
    const sock: Socket = connect(Number(port), host);
    sock.write(`GET /v1/tasks/${up}/pieces/0 HTTP/1.1\r\nHost: x\r\n\r\n`);
    await new Promise<void>((resolve) => sock.once("data", () => resolve()));
    sock.pause();
    let l = await list(d);
    assert.equal(l.tasks.find((t) => t.taskId === up)?.inUse, 1, "the upload holds the task");
    // And a `get -O -` whose reader stopped reading.
    const reader = spawn(
      process.execPath,
      [BIN_DAMSELFLY, "get", origin.url("/busy/up.bin"), "--piece-length", "16MiB", "-O", "-", "--no-progress", "--daemon", d.apiUrl],
      { env: childEnv(), stdio: ["ignore", "pipe", "ignore"] },
    );
    const readerGone = new Promise((r) => reader.once("close", r));
    reader.stdout.once("data", () => reader.stdout.pause());
    for (let i = 0; (await list(d)).tasks.find((t) => t.taskId === up)?.inUse !== 2; i++) {
      assert.ok(i < 300, "the streaming get should hold the task");
      await sleep(50);
    }

    const idleIds: string[] = [];
    for (const n of [1, 2]) {
      origin.addRandomFile(`/busy/e${n}.bin`, 1 * MiB, `e${n}`);
      idleIds.push(taskId({ url: origin.url(`/busy/e${n}.bin`) }));
      await fetch(d, origin, `/busy/e${n}.bin`, join(out, `e${n}.bin`));
    }
    await idle(d, idleIds);
    // A download in progress: 12 MiB at 2 MiB/s.
    const slow = origin.addRandomFile("/busy/slow.bin", 12 * MiB, "slow", { throttle: 2 * MiB });
    const slowId = taskId({ url: origin.url("/busy/slow.bin") });
    const slowGet = d.get([origin.url("/busy/slow.bin"), "-O", join(out, "slow.bin"), "--no-progress"], { timeoutMs: 60_000 });
    for (let i = 0; ; i++) {
      l = await list(d);
      const s = l.tasks.find((t) => t.taskId === slowId);
      if (s && s.state === "downloading" && s.finishedPieces >= 1) break;
      assert.ok(i < 300, "the slow download should be under way");
      await sleep(50);
    }

    const policy = await api(d).pruneTasks({});
    assert.deepEqual(policy.evictedTaskIds, idleIds, "only the idle tasks go; the uploaded (older) one and the downloading one stay");
    assert.equal(policy.skippedInUse, 2);
    const refused = await api(d)
      .deleteTask({ taskId: slowId, refuseInUse: true })
      .catch((e: unknown) => fromConnectError(e));
    assert.equal((refused as Error & { code?: string }).code, "DF_ERR_TASK_IN_USE");
    const all = await api(d).pruneTasks({ all: true });
    assert.deepEqual([all.evictedTaskIds.length, all.skippedInUse], [0, 2]);
    l = await list(d);
    assert.deepEqual(l.tasks.map((t) => t.taskId).sort(), [up, slowId].sort());
    assert.equal(l.tasks.find((t) => t.taskId === slowId)?.state, "downloading", "still downloading: the checks above raced nothing");
    assert.equal(l.tasks.find((t) => t.taskId === up)?.inUse, 2);
    const rm = await cache(d, "rm", up);
    assert.equal(rm.code, 5, rm.stderr);
    assert.match(rm.stderr, /^damselfly cache: DF_ERR_TASK_IN_USE: /m);

    // Released: the child and the reader go away, the download finishes.
    sock.destroy();
    reader.kill("SIGKILL");
    await readerGone;
    const r = await slowGet;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(out, "slow.bin")), sha256Hex(slow));
    await idle(d, [up, slowId]);
    assert.deepEqual(await prune(d), [up, slowId], "then they go, least recently used first");
  });

  test("files that are not Damselfly's are never counted nor touched", async () => {
    const dataDir = join(cluster.dataRoot, "foreign");
    const foreign: Record<string, Buffer> = {
      "big-foreign.bin": Buffer.alloc(8 * MiB, 1),
      "tasks/notes.txt": Buffer.from("mine\n"),
      "tasks/abc/not-a-task": Buffer.alloc(1 * MiB, 2),
      // Looks like a task directory, but holds no metadata of ours.
      [`tasks/fff/${"f".repeat(64)}/data`]: Buffer.alloc(2 * MiB, 3),
    };
    for (const [p, b] of Object.entries(foreign)) {
      mkdirSync(join(dataDir, p, ".."), { recursive: true });
      writeFileSync(join(dataDir, p), b);
    }
    const d = await cluster.addDaemon({ name: "foreign", dataDir, args: gcArgs("3MiB", "1MiB") });
    const ids: string[] = [];
    for (const n of [1, 2]) {
      origin.addRandomFile(`/foreign/f${n}.bin`, 1 * MiB, `foreign${n}`);
      ids.push(taskId({ url: origin.url(`/foreign/f${n}.bin`) }));
      await fetch(d, origin, `/foreign/f${n}.bin`, join(out, `foreign${n}.bin`));
    }
    // Someone's file inside one of our task directories.
    const stray = join(taskDir(dataDir, ids[0]!), "stray.txt");
    writeFileSync(stray, "not ours\n");
    const l = await idle(d, ids);
    assert.ok(l.diskBytes >= 2 * MiB && l.diskBytes < 2.2 * MiB, `only the two tasks count: ${l.diskBytes}`);
    assert.deepEqual(await prune(d), [], "2 MiB of ours is under the 3 MiB watermark, whatever else is in the data dir");
    assert.deepEqual((await prune(d, "--all")).sort(), [...ids].sort());
    for (const [p, b] of Object.entries(foreign)) assert.ok(readFileSync(join(dataDir, p)).equals(b), `${p} untouched`);
    assert.equal(readFileSync(stray, "utf8"), "not ours\n");
    assert.deepEqual(readdirSync(taskDir(dataDir, ids[0]!)), ["stray.txt"], "only our files were deleted");
    assert.equal(existsSync(taskDir(dataDir, ids[1]!)), false);
  });

  test("a task not accessed for taskTtl is removed by the periodic pass, and the scheduler forgets it", async () => {
    const d = await cluster.addDaemon({ name: "ttl", args: gcArgs("0", "0", "3s", "500ms") });
    const data = origin.addRandomFile("/ttl/f.bin", 1 * MiB, "ttl");
    const id = taskId({ url: origin.url("/ttl/f.bin") });
    await fetch(d, origin, "/ttl/f.bin", join(out, "ttl.bin"));
    assert.deepEqual(await schedulerHolders(cluster, id), ["ttl"]);
    const line = await d.proc.waitForLog("disk gc pass", 15_000, (x) => x.reason === "interval" && x.tasks === 1);
    assert.ok((line.bytesFreed as number) >= 1 * MiB);
    assert.deepEqual((await list(d)).tasks, []);
    assert.deepEqual(await schedulerHolders(cluster, id), []);
    // Asked again, it is fetched again.
    await fetch(d, origin, "/ttl/f.bin", join(out, "ttl2.bin"));
    assert.equal(await sha256File(join(out, "ttl2.bin")), sha256Hex(data));
  });

  test("cache CLI: bad input gets stable codes", async () => {
    const d = await cluster.addDaemon({ name: "cli", args: gcArgs("0", "0") });
    const bad = await cache(d, "rm", "not-a-task");
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^damselfly cache: DF_ERR_USAGE: /m);
    const missing = await cache(d, "rm", "a".repeat(64));
    assert.equal(missing.code, 4);
    assert.match(missing.stderr, /DF_ERR_TASK_NOT_FOUND/);
    const both = await cache(d, "prune", "--all", "--to", "1MiB");
    assert.equal(both.code, 2);
    const dur = await cache(d, "prune", "--older-than", "soon");
    assert.equal(dur.code, 2);
    const down = await runDamselfly(["cache", "list", "--daemon", "http://127.0.0.1:1"], { timeoutMs: 30_000 });
    assert.equal(down.code, 5, down.stderr);
    assert.match(down.stderr, /DF_ERR_DAEMON_UNAVAILABLE/);
    // rm of a stored task, and the human listing.
    origin.addRandomFile("/cli/f.bin", 1 * MiB, "cli");
    const id = taskId({ url: origin.url("/cli/f.bin") });
    await fetch(d, origin, "/cli/f.bin", join(out, "cli.bin"));
    await idle(d, [id]);
    const listing = await cache(d, "list");
    assert.match(listing.stdout.toString(), new RegExp(`^${id}\\s+done\\s+1\\.0 MiB\\s+2/2\\s`, "m"));
    const rm = await cache(d, "rm", id);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout.toString(), new RegExp(`^removed ${id} \\(1\\.0 MiB freed\\)`, "m"));
    assert.deepEqual((await list(d)).tasks, []);
  });
});
