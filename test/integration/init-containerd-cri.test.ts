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
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startContainerd } from "../helpers/containerd.js";
import { criPullImage } from "../helpers/cri.js";
import { runCommand } from "../helpers/netns.js";
import { assertLayersSentOnce, directLayerGets, registryWithImage } from "../helpers/mirror-setup.js";
import { makeOciImage, pushImage } from "../helpers/oci-image.js";
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

// The other case, on the same real containerd: no config_path. The report
// says a restart is needed (exit 11) and it is right: after it, a CRI pull
// still goes straight to the registry. With --restart, config.toml gets
// config_path (its other lines kept) and the restart command runs; once
// containerd is back on the edited file, a CRI pull goes through the daemon.
test("init containerd without config_path: exit 11 and containerd indeed ignores hosts.toml; --restart edits config.toml and the pull after the restart uses the mirror", async (t) => {
  const dir = tempDir(t, "dfu-");
  const { registry, image, ref } = await registryWithImage(t, dir, { layers: [3 * MiB, 1 * MiB] });
  const second = await makeOciImage(join(dir, "image2"), { layers: [{ size: 2 * MiB }, { size: MiB }], seed: "second" });
  const ref2 = `${registry.hostPort}/test/other:v1`;
  await pushImage(second.layoutDir, ref2);
  registry.resetAccessLog();
  const cluster = await startCluster({ peers: 1, t });
  const daemon = cluster.peers[0]!;
  const certs = join(dir, "certs.d");
  const cdir = join(dir, "c");
  const first = await startContainerd(cdir, { t, cri: {} });
  const before = readFileSync(first.configFile, "utf8");
  const args = ["init", "containerd", "--json", "--config", first.configFile, "--config-path", certs, "--registry", registry.url, "--proxy", daemon.proxyUrl];

  const r = await runDamselfly([...args, "--restart-command", `touch ${join(dir, "not-run")}`]);
  assert.equal(r.code, 11, r.stderr);
  const report = JSON.parse(r.stdout.toString()) as { status: string; issues: { code: string }[] };
  assert.equal(report.status, "restart-required");
  assert.deepEqual(
    report.issues.map((i) => i.code),
    ["config-path-unset"],
  );
  assert.equal(readFileSync(first.configFile, "utf8"), before);
  assert.equal(existsSync(join(dir, "not-run")), false);
  assert.ok(existsSync(join(certs, registry.hostPort, "hosts.toml")));
  // True: without a restart containerd does not read the files.
  const direct = await criPullImage(first.socket, ref);
  assert.equal(direct.status, 0, direct.message);
  assert.ok(directLayerGets(await registry.accessLog(), image).length > 0, "containerd used hosts.toml without config_path");
  assert.equal(first.running, true);

  const restarted = await runDamselfly([...args, "--restart", "--restart-command", `kill ${first.pid}`]);
  assert.equal(restarted.code, 0, restarted.stderr);
  const after = readFileSync(first.configFile, "utf8");
  assert.equal(
    after,
    `${before}${before.endsWith("\n\n") ? "" : "\n"}[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ${JSON.stringify(certs)}\n`,
  );
  await first.stop();
  const again = await startContainerd(cdir, { t, cri: {}, keepConfig: true });
  registry.resetAccessLog();
  const viaMirror = await criPullImage(again.socket, ref2);
  assert.equal(viaMirror.status, 0, viaMirror.message);
  assert.deepEqual(directLayerGets(await registry.accessLog(), second), [], `containerd fetched layers itself after the restart\n${logTail(daemon, 40)}`);
  assertLayersSentOnce(registry, second, logTail(daemon, 40));
});
