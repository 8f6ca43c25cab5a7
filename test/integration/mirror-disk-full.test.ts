// Layers the daemon's store cannot hold, pulled through the registry mirror:
// the client gets the whole layer with the right digest, every time (it used
// to get an HTTP 200 cut off where the disk filled, on every retry). The
// client reads slower than the daemon downloads (containerd writing layers to
// its own disk), so the store fills while the response is still early. The
// stores are tmpfs mounts this test makes (root only).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import { registryWithImage } from "../helpers/mirror-setup.js";
import { logTail, pollUntil, tempDir } from "../helpers/store.js";
import { startThrottle } from "../helpers/throttle.js";
import { tmpfsStore } from "../helpers/tmpfs.js";

const MiB = 1024 * 1024;

interface Pulled {
  status: number;
  bytes: number;
  digest: string;
  cut: unknown;
}

// GETs a blob through the daemon's mirror; after the first chunk it waits for
// `meanwhile` before reading on.
async function pullBlob(peer: DaemonHandle, registry: string, digest: string, meanwhile: () => Promise<unknown>): Promise<Pulled> {
  const res = await request(`${peer.proxyUrl}/v2/test/app/blobs/${digest}?ns=${encodeURIComponent(registry)}`);
  const hash = createHash("sha256");
  let bytes = 0;
  let cut: unknown;
  let waited = false;
  try {
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      if (!waited) {
        waited = true;
        await meanwhile();
      }
    }
  } catch (err) {
    cut = err;
  }
  return { status: res.statusCode, bytes, digest: `sha256:${hash.digest("hex")}`, cut };
}

function storageFullFailures(peer: DaemonHandle): number {
  return peer.proc.logs.filter((l) => l.msg === "task download failed" && l.code === "DF_ERR_STORAGE_FULL").length;
}

function assertWhole(p: Pulled, layer: { size: number; digest: string }, peer: DaemonHandle, what: string): void {
  const seen = `${what}: HTTP ${p.status}, ${p.bytes} of ${layer.size} B${p.cut ? `, then ${String(p.cut)}` : ""}`;
  assert.equal(p.status, 200, seen);
  assert.equal(p.bytes, layer.size, `${seen}\n${logTail(peer, 40)}`);
  assert.equal(p.digest, layer.digest, seen);
}

test("a layer bigger than the free disk comes through the mirror whole, on every try", { timeout: 120_000 }, async (t) => {
  const mounted = tmpfsStore(t, "damselfly-mirror-full-", "16m");
  if (!mounted) return;
  const { registry, image } = await registryWithImage(t, tempDir(t, "damselfly-mirror-full-reg-"), { layers: [40 * MiB, 2 * MiB], seed: "mirror-full" });
  const cluster = await startCluster({ peers: 0, seed: false, t, dataRoot: join(mounted.root, "daemons") });
  const peer = await cluster.addDaemon({ name: "tiny", dataDir: mounted.store });
  const [big, small] = image.layers as [(typeof image.layers)[0], (typeof image.layers)[0]];

  for (let attempt = 1; attempt <= 2; attempt++) {
    const p = await pullBlob(peer, registry.hostPort, big.digest, () =>
      pollUntil(() => storageFullFailures(peer) >= attempt, "the daemon's download failing on the full disk", 30_000),
    );
    assertWhole(p, big, peer, `attempt ${attempt}`);
  }
  // Each try cost the registry about one layer: the daemon stored nothing
  // (its download failed before the first piece: it knew the size) and did
  // not fetch what it sent twice.
  const sent = registry.blobBytesSent(big.digest);
  assert.ok(sent <= 2 * 1.2 * big.size, `the registry sent ${sent} B for two tries of a ${big.size} B layer`);
  // What fits is still served (and stored).
  assertWhole(await pullBlob(peer, registry.hostPort, small.digest, async () => undefined), small, peer, "small layer");
  assert.ok(peer.proc.running, logTail(peer));
});

test("a disk that fills up mid-download: the layer comes through the mirror whole", { timeout: 120_000 }, async (t) => {
  const mounted = tmpfsStore(t, "damselfly-mirror-fills-", "40m");
  if (!mounted) return;
  const { registry, image } = await registryWithImage(t, tempDir(t, "damselfly-mirror-fills-reg-"), { layers: [24 * MiB], seed: "mirror-fills" });
  // A slow registry, so the disk can fill while the daemon downloads.
  const throttle = await startThrottle({ host: registry.host, port: registry.port }, 4 * 1000 * 1000);
  t.after(() => throttle.stop());
  const cluster = await startCluster({ peers: 0, seed: false, t, dataRoot: join(mounted.root, "daemons") });
  const peer = await cluster.addDaemon({ name: "fills", dataDir: mounted.store, args: ["--gc-interval", "0"] });
  const layer = image.layers[0]!;

  const p = await pullBlob(peer, throttle.hostPort, layer.digest, async () => {
    await pollUntil(() => throttle.sent() > 6 * MiB, "the daemon downloading", 30_000);
    // Someone else's 30 MiB: the store cannot hold the rest of the layer.
    writeFileSync(join(mounted.store, "filler.bin"), Buffer.alloc(30 * MiB, 7));
    throttle.setRate(200 * 1000 * 1000);
    await pollUntil(() => storageFullFailures(peer) >= 1, "the daemon's download failing on the full disk", 30_000);
  });
  assertWhole(p, layer, peer, "layer");
  assert.ok(peer.proc.running, logTail(peer));
});
