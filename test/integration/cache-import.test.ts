// Files with no origin (`damselfly cache import|export|stat`) against a real
// scheduler, a seed peer and peers: a file imported on one peer, that peer
// then stopped, is exported byte for byte on two others (from the replica
// the scheduler placed); the task ID is the content's; bad input gets stable
// codes and leaves nothing at -O.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, createReadStream, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { cacheTaskId, createRpcTransport, daemonv1, DownloadSchema, fromConnectError, schedulerv1 } from "../../src/protocol/index.js";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { runDamselfly, type RunResult } from "../helpers/procs.js";
import { logTail, storedMeta } from "../helpers/store.js";

const MiB = 1024 * 1024;

function cache(d: DaemonHandle, ...args: string[]): Promise<RunResult> {
  return runDamselfly(["cache", ...args, "--daemon", d.apiUrl], { timeoutMs: 120_000 });
}

// The command under GNU time: its result and its peak RSS in MiB.
async function measured(d: DaemonHandle, ...args: string[]): Promise<{ r: RunResult; mib: number }> {
  const r = await runDamselfly(["cache", ...args, "--daemon", d.apiUrl], { timeoutMs: 3_600_000, prefix: ["/usr/bin/time", "-v"] });
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  assert.ok(m, r.stderr);
  return { r, mib: Number(m[1]) / 1024 };
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

// DAMSELFLY_TEST_CACHE_MIB: the size of the big import (default 512 MiB).
const BIG_MIB = Number(process.env.DAMSELFLY_TEST_CACHE_MIB ?? 512);

describe("cache import/export: files with no origin", { timeout: 300_000 + BIG_MIB * 200 }, () => {
  let cluster: Cluster;
  let dir: string;
  before(async () => {
    cluster = await startCluster({ peers: 3, seed: true });
    dir = mkdtempSync(join(tmpdir(), "damselfly-cache-import-"));
  });
  after(async () => {
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("imported on one peer, that peer stopped, exported on two others: identical bytes", async () => {
    const [writer, a, b] = cluster.peers as [DaemonHandle, DaemonHandle, DaemonHandle];
    // Not a multiple of any piece length: the last piece is short.
    const content = randomBytes(9 * MiB + 12_345);
    const file = join(dir, "checkpoint.bin");
    writeFileSync(file, content);
    const imp = await cache(writer, "import", file, "--replicas", "1", "--ttl", "3h");
    assert.equal(imp.code, 0, `${imp.stderr}\n${logTail(writer)}`);
    const id = imp.stdout.toString();
    assert.match(id, /^[0-9a-f]{64}\n$/);
    const taskId = id.trim();
    // Content-addressed: the ID is made of the content's sha256 alone.
    assert.equal(taskId, cacheTaskId(`sha256:${sha256(content)}`));
    assert.match(imp.stderr, /1 of 1 replica\(s\) placed/);
    // The replica went to the seed peer (the only host the scheduler can
    // place it on besides the peers, seed first) with the import's TTL.
    const seed = cluster.seed!;
    const meta = storedMeta(seed.dataDir, taskId) as (ReturnType<typeof storedMeta> & { ttlMs?: number }) | undefined;
    assert.equal(meta?.done, true, "the seed peer holds the replica");
    assert.equal(meta?.ttlMs, 3 * 3_600_000);
    // It copied it from the writer: nobody is ever sent to an origin.
    const copied = seed.proc.logs.find((l) => l.msg === "task downloaded" && l.taskId === taskId);
    assert.equal(copied?.backToSource, false, logTail(seed));
    assert.equal(copied?.bytesFromSource, 0);
    // Importing the same bytes again is the same task.
    const again = await cache(writer, "import", file, "--replicas", "0");
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.toString(), id);

    const stat = await cache(a, "stat", taskId, "--json");
    assert.equal(stat.code, 0, stat.stderr);
    const s = JSON.parse(stat.stdout.toString()) as { digest: string; holders: number; local: unknown };
    assert.equal(s.digest, `sha256:${sha256(content)}`);
    assert.ok(s.holders >= 2, `writer and replica hold it: ${stat.stdout.toString()}`);
    assert.equal(s.local, null);

    assert.equal(await cluster.stopDaemon(writer), 0);
    for (const d of [a, b]) {
      const out = join(dir, `out-${d.name}.bin`);
      const r = await cache(d, "export", taskId, "-O", out);
      assert.equal(r.code, 0, `${r.stderr}\n${logTail(d)}`);
      assert.ok(readFileSync(out).equals(content), `${d.name}: identical bytes`);
    }
  });

  test("bad input: usage, unknown ID, missing file; nothing left at -O", async () => {
    const d = cluster.peers[2]!;
    const out = join(dir, "never.bin");
    const bad = await cache(d, "export", "not-a-task", "-O", out);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /DF_ERR_USAGE/);
    const nobody = cacheTaskId(`sha256:${"ab".repeat(32)}`);
    const missing = await cache(d, "export", nobody, "-O", out);
    assert.equal(missing.code, 4, missing.stderr);
    assert.match(missing.stderr, /DF_ERR_TASK_NOT_FOUND: no peer holds task/);
    const st = await cache(d, "stat", nobody);
    assert.equal(st.code, 4, st.stderr);
    assert.match(st.stderr, /DF_ERR_TASK_NOT_FOUND/);
    const noFile = await cache(d, "import", join(dir, "no-such-file"));
    assert.equal(noFile.code, 2, noFile.stderr);
    assert.match(noFile.stderr, /DF_ERR_USAGE: cannot read .*no such file/);
    const replicas = await cache(d, "import", join(dir, "checkpoint.bin"), "--replicas", "99");
    assert.equal(replicas.code, 2, replicas.stderr);
    // ReplicateTask takes only an imported task's download: a peer cannot
    // make other hosts fetch a URL through it.
    const scheduler = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
    const hostId = d.ready.hostId as string;
    const url = create(DownloadSchema, { url: "http://127.0.0.1:1/x", digest: `sha256:${"ab".repeat(32)}`, digestTaskId: true });
    const refused = await scheduler.replicateTask({ hostId, download: url, replicas: 1 }).then(
      () => "ok",
      (err: unknown) => fromConnectError(err).code,
    );
    assert.equal(refused, "DF_ERR_INVALID_REQUEST");
    assert.equal(existsSync(out), false);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.includes("damselfly-") && n.endsWith(".tmp")),
      [],
      "no temporary file left",
    );
  });

  test("an import whose bytes are not what its header declared leaves nothing", async () => {
    const d = cluster.peers[2]!;
    const api = createClient(daemonv1.DaemonService, createRpcTransport(d.apiUrl));
    const content = randomBytes(3 * MiB);
    const imports = async (digest: string, length: number, body: Buffer): Promise<string> => {
      async function* messages() {
        yield create(daemonv1.ImportTaskRequestSchema, {
          part: { case: "header", value: create(daemonv1.ImportTaskHeaderSchema, { digest, contentLength: BigInt(length), replicas: 0 }) },
        });
        for (let at = 0; at < body.length; at += MiB)
          yield create(daemonv1.ImportTaskRequestSchema, { part: { case: "data", value: body.subarray(at, at + MiB) } });
      }
      try {
        await api.importTask(messages());
        return "ok";
      } catch (err) {
        return fromConnectError(err).code;
      }
    };
    const lie = `sha256:${sha256(randomBytes(16))}`;
    assert.equal(await imports(lie, content.length, content), "DF_ERR_DIGEST_MISMATCH");
    assert.equal(storedMeta(d.dataDir, cacheTaskId(lie)), undefined, "nothing stored under the declared digest");
    const real = `sha256:${sha256(content)}`;
    assert.equal(await imports(real, content.length + 1, content), "DF_ERR_INVALID_REQUEST");
    assert.equal(await imports(real, content.length - 1, content), "DF_ERR_INVALID_REQUEST");
    assert.equal(storedMeta(d.dataDir, cacheTaskId(real)), undefined);
    assert.equal(await imports("md5:abc", 1, Buffer.alloc(1)), "DF_ERR_INVALID_DIGEST");
  });

  test("no replica and the writer gone: export fails (DF_ERR_TASK_NOT_FOUND), never hangs, leaves no file", async () => {
    const writer = await cluster.addDaemon({ name: "lonely-writer" });
    const reader = cluster.peers[1]!;
    const content = randomBytes(2 * MiB + 7);
    const file = join(dir, "lonely.bin");
    writeFileSync(file, content);
    const imp = await cache(writer, "import", file, "--replicas", "0");
    assert.equal(imp.code, 0, imp.stderr);
    const id = imp.stdout.toString().trim();
    assert.equal(await cluster.stopDaemon(writer), 0);
    const out = join(dir, "lonely-out.bin");
    const r = await cache(reader, "export", id, "-O", out);
    assert.equal(r.code, 4, `${r.stderr}\n${logTail(reader)}`);
    assert.match(r.stderr, /DF_ERR_TASK_NOT_FOUND/);
    assert.equal(existsSync(out), false);
    assert.equal(storedMeta(reader.dataDir, id)?.done ?? false, false);
    // No seed peer was sent after a task it could only copy from a holder.
    assert.equal(
      cluster.seed!.proc.logs.find((l) => l.taskId === id && l.msg === "task triggered by the scheduler"),
      undefined,
    );
  });

  // Issue 21 item 7: no step holds a whole file. The size is an env knob
  // (DAMSELFLY_TEST_CACHE_MIB) so the same test measures a 10 GiB file.
  test("a big import and export keep every daemon's (and the CLI's) peak RSS under 200 MiB", async () => {
    const mib = BIG_MIB;
    const writer = await cluster.addDaemon({ name: "big-writer" });
    const reader = await cluster.addDaemon({ name: "big-reader" });
    const file = join(dir, "big.bin");
    const chunk = randomBytes(MiB);
    const h = createHash("sha256");
    const fd = openSync(file, "w");
    for (let i = 0; i < mib; i++) {
      // Every MiB different, so no piece is a copy of another.
      chunk.writeUInt32LE(i, 0);
      h.update(chunk);
      writeSync(fd, chunk);
    }
    closeSync(fd);
    const { r: imp, mib: importMib } = await measured(writer, "import", file, "--replicas", "1");
    assert.equal(imp.code, 0, `${imp.stderr}\n${logTail(writer)}`);
    const id = imp.stdout.toString().trim();
    rmSync(file);
    const out = join(dir, "big-out.bin");
    const { r, mib: exportMib } = await measured(reader, "export", id, "-O", out);
    assert.equal(r.code, 0, `${r.stderr}\n${logTail(reader)}`);
    assert.equal(await sha256Stream(out), h.digest("hex"));
    rmSync(out);
    const peaks = [writer, reader, cluster.seed!].map((d) => ({ name: d.name, mib: peakRssBytes(d.proc.pid) / MiB }));
    peaks.push({ name: "cli-import", mib: importMib }, { name: "cli-export", mib: exportMib });
    console.log(`cache import/export of ${mib} MiB: peak RSS ${peaks.map((p) => `${p.name} ${p.mib.toFixed(0)} MiB`).join(", ")}`);
    for (const p of peaks) assert.ok(p.mib < 200, `${p.name} peaked at ${p.mib.toFixed(0)} MiB`);
  });
});

// With mutual TLS every piece a peer accepts must carry a digest signed
// under a scheduler grant: the importer gets one (GrantImport) and signs
// its pieces, so the replica and the readers take them.
describe("cache import/export with TLS (zero trust)", { timeout: 300_000 }, () => {
  let cluster: Cluster;
  let dir: string;
  before(async () => {
    cluster = await startCluster({ tls: true, peers: 3, seed: true });
    dir = mkdtempSync(join(tmpdir(), "damselfly-cache-import-tls-"));
  });
  after(async () => {
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("imported on one peer, that peer stopped, exported on another: identical bytes", async () => {
    const [writer, reader] = cluster.peers as [DaemonHandle, DaemonHandle];
    const content = randomBytes(5 * MiB + 1);
    const file = join(dir, "signed.bin");
    writeFileSync(file, content);
    const imp = await cache(writer, "import", file);
    assert.equal(imp.code, 0, `${imp.stderr}\n${logTail(writer)}`);
    assert.match(imp.stderr, /1 of 1 replica\(s\) placed/, `${imp.stderr}\n${logTail(writer)}\n${logTail(cluster.seed!)}`);
    const id = imp.stdout.toString().trim();
    assert.equal(await cluster.stopDaemon(writer), 0);
    const out = join(dir, "signed-out.bin");
    const r = await cache(reader, "export", id, "-O", out);
    assert.equal(r.code, 0, `${r.stderr}\n${logTail(reader)}`);
    assert.ok(readFileSync(out).equals(content));
  });

  test("an empty file: imported, exported elsewhere as an empty file", async () => {
    const [, reader, writer] = cluster.peers as [DaemonHandle, DaemonHandle, DaemonHandle];
    const file = join(dir, "empty.bin");
    writeFileSync(file, "");
    const imp = await cache(writer, "import", file);
    assert.equal(imp.code, 0, `${imp.stderr}\n${logTail(writer)}`);
    const id = imp.stdout.toString().trim();
    const out = join(dir, "empty-out.bin");
    const r = await cache(reader, "export", id, "-O", out);
    assert.equal(r.code, 0, `${r.stderr}\n${logTail(reader)}`);
    assert.equal(readFileSync(out).length, 0);
  });
});

// VmHWM: the process's peak resident set so far.
function peakRssBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  assert.ok(m, "VmHWM in /proc/PID/status");
  return Number(m[1]) * 1024;
}

async function sha256Stream(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(c as Buffer);
  return h.digest("hex");
}
