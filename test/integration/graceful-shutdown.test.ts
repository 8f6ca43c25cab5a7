// SIGTERM on a parent daemon in the middle of serving three children: the
// children finish with the right bytes and no error, the parent refuses new
// downloads with a clear code, finishes its uploads in flight, tells the
// scheduler it is leaving and exits 0 within its shutdown timeout; its proxy
// serves blobs straight from the origin meanwhile.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { taskId } from "../../src/common/task-id.js";
import { createRpcTransport, schedulerv1 } from "../../src/protocol/index.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { randomBytesSeeded, startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { sha256File, tempDir } from "../helpers/store.js";
import { startThrottle, type Throttle } from "../helpers/throttle.js";

const MiB = 1024 * 1024;
const SIZE = 48 * MiB;
// Pieces far bigger than the socket buffers between the parent and the
// throttle (~4 MiB here): the parent's uploads stay in flight while the
// throttle holds them.
const PIECE = ["--piece-length", "16MiB"];
const SHUTDOWN_TIMEOUT_MS = 20_000;

function httpGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on("error", reject);
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("graceful shutdown", { timeout: 90_000 }, () => {
  let origin: Origin;
  let cluster: Cluster;
  let throttle: Throttle | undefined;

  before(async () => {
    origin = await startOrigin();
    // No seed: the parent is the only complete copy, so the children depend
    // on it (peer-first cold start: the first requester fetches itself).
    cluster = await startCluster({ peers: 0, seed: false, schedulerArgs: ["--cold-start", "peer"] });
  });
  after(async () => {
    await cluster?.stop();
    await throttle?.stop();
    await origin?.close();
  });

  test("SIGTERM on a parent mid-serving: children finish, new gets refused, parent exits 0, scheduler forgets it", async (t) => {
    const dir = tempDir(t);
    const expected = sha256Hex(origin.addRandomFile("/shared.bin", SIZE, "graceful"));
    const url = origin.url("/shared.bin");
    // Children reach the parent only through a throttle: the parent
    // advertises 127.0.0.2, where the throttle listens on its upload port.
    const parent = await cluster.addDaemon({
      name: "parent",
      args: ["--advertise-ip", "127.0.0.2", "--upload-concurrency", "2", "--shutdown-timeout", `${SHUTDOWN_TIMEOUT_MS}ms`],
    });
    const first = await parent.get([url, "-O", join(dir, "parent.bin"), "--no-progress", ...PIECE]);
    assert.equal(first.code, 0, first.stderr);
    const uploadPort = Number(parent.upload.split(":").pop());
    throttle = await startThrottle({ host: "127.0.0.1", port: uploadPort }, 8 * MiB, { host: "127.0.0.2", port: uploadPort });

    const children = await Promise.all([0, 1, 2].map((i) => cluster.addDaemon({ name: `child-${i}` })));
    const gets = children.map((c, i) => c.get([url, "-O", join(dir, `child-${i}.bin`), "--no-progress", ...PIECE], { timeoutMs: 60_000 }));
    await until(() => throttle!.sent() >= 3 * MiB, "the parent to serve 3 MiB");
    // Hold the parent's uploads in flight across the signal.
    throttle.setRate(256 * 1024);
    const signalled = Date.now();
    parent.proc.kill("SIGTERM");
    const draining = await parent.proc.waitForLog("shutting down: leaving the schedulers, finishing uploads in flight", 10_000);
    assert.ok(Number(draining.activeUploads) > 0, `the signal should land mid-upload: ${JSON.stringify(draining)}`);

    // A new download on the terminating daemon is refused with a clear code.
    const refused = await parent.get([url, "-O", join(dir, "late.bin"), "--no-progress", ...PIECE]);
    assert.equal(refused.code, 5, refused.stderr);
    assert.match(refused.stderr, /DF_ERR_SHUTTING_DOWN/);

    // A proxied blob is still served, straight from the registry (no task).
    const blob = randomBytesSeeded(2 * MiB, "blob");
    const blobPath = `/v2/lib/app/blobs/sha256:${sha256Hex(blob)}`;
    origin.addFile(blobPath, blob);
    const proxied = await httpGet(`${parent.proxyUrl}${blobPath}`, { "x-damselfly-registry": `127.0.0.1:${origin.port}` });
    assert.equal(proxied.status, 200);
    assert.equal(sha256Hex(proxied.body), sha256Hex(blob));
    assert.equal(proxied.headers["x-damselfly-task-id"], undefined, "served from the origin, not through a new P2P task");

    throttle.setRate(64 * MiB);
    const code = await parent.proc.exited;
    const tookMs = Date.now() - signalled;
    assert.equal(code, 0, parent.proc.stderr().slice(-3000));
    assert.ok(tookMs < SHUTDOWN_TIMEOUT_MS, `the parent took ${tookMs} ms to exit`);
    await parent.proc.waitForLog("uploads in flight finished", 1_000);
    t.diagnostic(
      `parent exited ${tookMs} ms after SIGTERM; it had ${String(draining.activeUploads)} uploads in flight; throttle passed ${(throttle.sent() / MiB).toFixed(1)} MiB`,
    );

    const results = await Promise.all(gets);
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `child-${i}: ${r.stderr}`);
      assert.equal(await sha256File(join(dir, `child-${i}.bin`)), expected, `child-${i}'s bytes`);
      assert.equal(children[i]!.proc.logs.filter((l) => l.msg === "task download failed").length, 0, `child-${i} saw a failed download`);
    }

    // The scheduler dropped the host when told, and lists only the children.
    const hostId = String(parent.ready.hostId);
    await cluster.scheduler.proc.waitForLog("host left", 1_000, (l) => l.hostId === hostId);
    const client = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${cluster.scheduler.address}`));
    const listed = await client.listTaskPeers({ taskId: taskId({ url, pieceLength: 16 * MiB }) });
    const hosts = listed.peers.map((p) => p.hostname).sort();
    assert.deepEqual(hosts, ["child-0", "child-1", "child-2"]);
  });
});
