import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { request } from "undici";
import { startCluster } from "../helpers/cluster.js";
import { startContainerd } from "../helpers/containerd.js";
import { tempDir, logTail, pollUntil } from "../helpers/store.js";
import { startThrottle } from "../helpers/throttle.js";
import { directLayerGets, initContainerd, pullOk, registryWithImage } from "../helpers/mirror-setup.js";

const MiB = 1024 * 1024;

describe("registry mirror fallback", () => {
  test("scheduler stopped: the pull still succeeds through the mirror (the daemon fetches from the registry)", async (t) => {
    const dir = tempDir(t, "dff-");
    const { registry, image, ref } = await registryWithImage(t, dir, { layers: [6 * MiB, 2 * MiB], seed: "nosched" });
    const cluster = await startCluster({ peers: 1, t, daemonArgs: ["--scheduler-connect-timeout", "1s"] });
    const p = cluster.peers[0]!;
    const hosts = await initContainerd(dir, registry.url, p);
    const c = await startContainerd(join(dir, "c"), { t });
    await cluster.scheduler.proc.stop();

    await pullOk(c, ref, hosts);
    const log = await registry.accessLog();
    assert.deepEqual(directLayerGets(log, image), [], `containerd had to go around the mirror\n${logTail(p)}`);
    assert.ok(
      p.proc.logs.some((l) => l.msg === "fetching from the origin"),
      logTail(p),
    );
  });

  test("seed peer killed mid-blob: the pull still succeeds through the mirror", async (t) => {
    const dir = tempDir(t, "dff-");
    const { registry, image } = await registryWithImage(t, dir, { layers: [32 * MiB], seed: "killseed" });
    // A slow registry (8 MB/s) so the seed is surely mid-blob when killed.
    const throttle = await startThrottle({ host: registry.host, port: registry.port }, 8 * 1000 * 1000);
    t.after(() => throttle.stop());
    const ref = `${throttle.hostPort}/test/app:v1`;
    // Seed-first: the seed is the peer's only parent while it fetches.
    const cluster = await startCluster({ peers: 1, t, schedulerArgs: ["--cold-start", "seed"] });
    const p = cluster.peers[0]!;
    const hosts = await initContainerd(dir, `http://${throttle.hostPort}`, p);
    const c = await startContainerd(join(dir, "c"), { t });

    const pull = pullOk(c, ref, hosts);
    await pollUntil(() => throttle.sent() > 8 * MiB, "seed fetching the layer", 30_000);
    await cluster.stopDaemon(cluster.seed!, "SIGKILL");
    throttle.setRate(200 * 1000 * 1000);
    await pull;

    const log = await registry.accessLog();
    assert.deepEqual(directLayerGets(log, image), [], `containerd had to go around the mirror\n${logTail(p, 40)}`);
    // The layer reached the node once from the seed's partial fetch, and the
    // rest from the registry: never more than twice.
    const layer = image.layers[0]!;
    assert.ok(registry.blobBytesSent(layer.digest) <= 2 * layer.size, `registry sent ${registry.blobBytesSent(layer.digest)} B`);
  });

  test("P2P stalls mid-response: the daemon continues from the registry at the byte where it stopped; the client sees one clean response", async (t) => {
    const dir = tempDir(t, "dff-");
    const { registry, image } = await registryWithImage(t, dir, { layers: [24 * MiB], seed: "stall" });
    const throttle = await startThrottle({ host: registry.host, port: registry.port }, 6 * 1000 * 1000);
    t.after(() => throttle.stop());
    const cluster = await startCluster({ peers: 1, t, daemonArgs: ["--proxy-stall-timeout", "1s"], schedulerArgs: ["--cold-start", "seed"] });
    const p = cluster.peers[0]!;
    const seed = cluster.seed!;
    const layer = image.layers[0]!;
    const url = `${p.proxyUrl}/v2/test/app/blobs/${layer.digest}?ns=${encodeURIComponent(throttle.hostPort)}`;

    const res = await request(url);
    assert.equal(res.statusCode, 200);
    const hash = createHash("sha256");
    let received = 0;
    let frozen = false;
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      received += (chunk as Buffer).length;
      if (!frozen && received > 4 * MiB) {
        // Freeze the seed (the only parent): pieces stop arriving, but no
        // connection breaks, so only the stall timer can notice.
        frozen = true;
        seed.proc.kill("SIGSTOP");
        t.after(() => seed.proc.kill("SIGCONT"));
        throttle.setRate(200 * 1000 * 1000);
      }
    }
    seed.proc.kill("SIGCONT");
    assert.ok(frozen, "the response finished before the seed could be frozen");
    assert.equal(received, layer.size);
    assert.equal("sha256:" + hash.digest("hex"), layer.digest, "the stitched response is not the blob");
    const line = await p.proc.waitForLog("proxy: P2P failed mid-response, continuing from the origin", 5_000);
    assert.ok(Number(line["at"]) >= 4 * MiB && Number(line["at"]) < layer.size, `continued at byte ${String(line["at"])}`);
    const served = await p.proc.waitForLog("proxy: served from P2P", 5_000);
    assert.ok(Number(served["fallbackBytes"]) > 0 && Number(served["fallbackBytes"]) < layer.size, JSON.stringify(served));
  });
});
