// Restart-free onboarding against the real containerd installed here (1.6):
// a private containerd with its CRI plugin and config_path set, onboarded by
// `damselfly init containerd` reading that containerd's own config.toml. The
// hosts.toml lands in config_path, containerd is not restarted (same PID, the
// restart command never runs), and a CRI PullImage — the kubelet's call,
// which reads config_path (ctr --hosts-dir would bypass it) — goes through the
// Damselfly daemon's mirror: containerd fetches no layer from the registry
// itself, and each layer leaves the registry once (the daemon's fetch).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startContainerd } from "../helpers/containerd.js";
import { criPullImage } from "../helpers/cri.js";
import { runCommand } from "../helpers/netns.js";
import { assertLayersSentOnce, directLayerGets, registryWithImage } from "../helpers/mirror-setup.js";
import { runDamselfly } from "../helpers/procs.js";
import { logTail, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;

test("init containerd on a containerd with config_path: hosts.toml written, no restart, the CRI pull goes through the daemon", async (t) => {
  const dir = tempDir(t, "dfo-");
  const { registry, image, ref } = await registryWithImage(t, dir, { layers: [4 * MiB, 2 * MiB] });
  const cluster = await startCluster({ peers: 1, t });
  const daemon = cluster.peers[0]!;
  const certs = join(dir, "certs.d");
  mkdirSync(certs);
  const containerd = await startContainerd(join(dir, "c"), { t, cri: { configPath: certs } });
  const pid = containerd.pid;
  const marker = join(dir, "restarted");

  const r = await runDamselfly([
    "init",
    "containerd",
    "--json",
    "--config",
    containerd.configFile,
    "--registry",
    registry.url,
    "--proxy",
    daemon.proxyUrl,
    "--restart-command",
    `touch ${marker}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout.toString()) as { status: string; containerd: { version: string }; configPath: { source: string }; hostsDir: string };
  assert.equal(report.status, "configured", r.stdout.toString());
  assert.match(report.containerd.version, /^1\.6\./);
  assert.equal(report.configPath.source, "config");
  assert.equal(report.hostsDir, certs);
  assert.ok(existsSync(join(certs, registry.hostPort, "hosts.toml")));

  const pulled = await criPullImage(containerd.socket, ref);
  assert.equal(pulled.status, 0, `CRI PullImage failed: ${pulled.message}\n${containerd.stderr().slice(-3000)}`);
  assert.match(pulled.imageRef ?? "", /^sha256:[0-9a-f]{64}$/);
  assert.equal(pulled.imageRef, image.configDigest);

  // No restart: the same process, running, and the restart command never ran.
  assert.equal(containerd.running, true);
  assert.equal(containerd.pid, pid);
  assert.equal(existsSync(marker), false);
  assert.doesNotMatch(containerd.stderr(), /containerd successfully booted[\s\S]*containerd successfully booted/);

  const log = await registry.accessLog();
  assert.deepEqual(directLayerGets(log, image), [], `containerd fetched layers from the registry itself\n${logTail(daemon, 40)}`);
  assertLayersSentOnce(registry, image, logTail(daemon, 40));
  // In the kubelet's namespace, as a CRI pull puts it.
  const listed = await runCommand("ctr", ["-a", containerd.socket, "-n", "k8s.io", "images", "ls", "-q"], { timeoutMs: 30_000 });
  assert.ok(listed.stdout.includes(ref), listed.stdout);
});
