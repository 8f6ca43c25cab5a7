import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { runDamselfly, type Cleanup } from "./procs.js";
import { startRegistry, type Registry } from "./registry.js";
import { makeOciImage, pushImage, type OciImage } from "./oci-image.js";
import { startCluster, type Cluster, type DaemonHandle } from "./cluster.js";
import { startContainerd, type Containerd } from "./containerd.js";
import type { AccessEntry } from "./registry.js";

export interface ImageRegistry {
  registry: Registry;
  image: OciImage;
  // "127.0.0.1:PORT/test/app:v1"
  ref: string;
}

// A real docker-registry holding a generated multi-layer image, with the push
// traffic cleared from its access log.
// A node's daemon fetches each layer of image through its registry mirror
// (as containerd would, with ns=), so the daemon holds the layers and the
// scheduler knows it.
export async function pullBlobsThrough(proxyUrl: string, registry: Registry, image: OciImage): Promise<void> {
  for (const l of image.layers) {
    const r = await request(`${proxyUrl}/v2/test/app/blobs/${l.digest}?ns=${encodeURIComponent(registry.hostPort)}`);
    await r.body.dump();
    assert.equal(r.statusCode, 200, `layer ${l.digest} through ${proxyUrl}`);
  }
}

export async function registryWithImage(
  t: Cleanup,
  dir: string,
  o: { layers: number[]; auth?: { user: string; password: string }; seed?: string },
): Promise<ImageRegistry> {
  const registry = await startRegistry({ dir: join(dir, "registry"), t, ...(o.auth ? { auth: o.auth } : {}) });
  const image = await makeOciImage(join(dir, "image"), { layers: o.layers.map((size) => ({ size })), seed: o.seed ?? "mirror" });
  const ref = `${registry.hostPort}/test/app:v1`;
  await pushImage(image.layoutDir, ref, o.auth ? { creds: o.auth } : {});
  registry.resetAccessLog();
  return { registry, image, ref };
}

// Writes containerd hosts.toml for the registry through this daemon's mirror
// with the real `damselfly init containerd`, and returns the hosts dir.
export async function initContainerd(dir: string, registryUrl: string, daemon: DaemonHandle): Promise<string> {
  const hostsDir = join(dir, `hosts-${daemon.name}`);
  mkdirSync(hostsDir, { recursive: true });
  const r = await runDamselfly(["init", "containerd", "--config-path", hostsDir, "--registry", registryUrl, "--proxy", daemon.proxyUrl]);
  assert.equal(r.code, 0, `init containerd failed: ${r.stderr}`);
  return hostsDir;
}

// Layer GETs the registry answered to containerd itself: containerd falls
// back to the registry when a mirror fails, so a pull that succeeded proves
// nothing about the mirror unless this is empty.
export function directLayerGets(entries: readonly AccessEntry[], image: OciImage): AccessEntry[] {
  const layers = new Set(image.layers.map((l) => l.digest));
  return entries.filter((e) => e.method === "GET" && /containerd|skopeo/i.test(e.userAgent) && layers.has(e.path.split("/blobs/")[1] ?? ""));
}

export async function pullOk(c: Containerd, ref: string, hostsDir: string, user?: { user: string; password: string }): Promise<void> {
  const r = await c.pull(ref, { hostsDir, ...(user ? { user } : {}), timeoutMs: 120_000 });
  assert.equal(r.code, 0, `ctr pull failed (${r.code}): ${r.stderr.slice(-2000)}`);
  assert.ok(r.unpacked, `image not unpacked: ${r.check}`);
}

export interface TwoNodes {
  cluster: Cluster;
  nodes: { daemon: DaemonHandle; containerd: Containerd; hostsDir: string }[];
}

// A cluster (seed + two peers) and two containerd instances, each pointed at
// its own daemon's mirror by `damselfly init containerd`.
export async function twoContainerdNodes(t: Cleanup, dir: string, registryUrl: string): Promise<TwoNodes> {
  const cluster = await startCluster({ peers: 2, t });
  const nodes = [];
  for (const [i, daemon] of cluster.peers.entries()) {
    const hostsDir = await initContainerd(dir, registryUrl, daemon);
    nodes.push({ daemon, containerd: await startContainerd(join(dir, `c${i + 1}`), { t }), hostsDir });
  }
  return { cluster, nodes };
}

// Each layer left the registry about once (at least once, at most 1.1x).
export function assertLayersSentOnce(registry: Registry, image: OciImage, context = ""): void {
  for (const l of image.layers) {
    const sent = registry.blobBytesSent(l.digest);
    assert.ok(
      sent >= l.size && sent <= l.size * 1.1,
      `layer ${l.digest} (${l.size} B): registry sent ${sent} B, expected about once${context ? `\n${context}` : ""}`,
    );
  }
}
