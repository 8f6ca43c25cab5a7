// `damselfly init docker` against the engine's real dockerd (Debian 12's
// docker.io is Engine 20.10, which refuses to start with a "proxies" key in
// daemon.json): what init writes is a file that dockerd reads without
// complaint, and one it would refuse is never written. Skipped without dockerd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runDamselfly } from "../helpers/procs.js";
import { tempDir } from "../helpers/store.js";

function findDockerd(): string | undefined {
  for (const bin of ["/usr/sbin/dockerd", "/usr/bin/dockerd"]) if (existsSync(bin)) return bin;
  return undefined;
}

// What the real dockerd says of a daemon.json, without starting: a copy that
// also sets "pidfile", with --pidfile given too, stops it right after it
// checked the file's keys (the config is its first step).
function dockerdComplaint(dockerd: string, file: string, dir: string): string {
  const copy = join(dir, "probe.json");
  writeFileSync(copy, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), pidfile: "/nonexistent/a.pid" }));
  const r = spawnSync(dockerd, ["--config-file", copy, "--pidfile", "/nonexistent/b.pid"], { encoding: "utf8", timeout: 15_000 });
  return r.stderr;
}

test("init docker leaves a daemon.json the real dockerd starts with", { timeout: 60_000 }, async (t) => {
  const dockerd = findDockerd();
  if (!dockerd) return t.skip("no dockerd installed");
  const version = execFileSync(dockerd, ["--version"], { encoding: "utf8" });
  const dir = tempDir(t, "damselfly-init-docker-");
  const file = join(dir, "daemon.json");
  const dropIn = join(dir, "damselfly-proxy.conf");
  writeFileSync(file, JSON.stringify({ "log-driver": "json-file", "registry-mirrors": ["https://mirror.example"] }));
  const r = await runDamselfly(["init", "docker", "--daemon-json", file, "--dockerd", dockerd, "--systemd-drop-in", dropIn]);
  assert.equal(r.code, 0, r.stderr);
  const said = dockerdComplaint(dockerd, file, dir);
  assert.match(said, /specified both as a flag and in the configuration file: pidfile/, `${version}: dockerd refuses the file init wrote:\n${said}`);
  assert.doesNotMatch(said, /don't match any configuration option/, said);
  const written = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  assert.deepEqual(written["registry-mirrors"], ["http://127.0.0.1:65001", "https://mirror.example"]);
  if (/version (\d+)/.exec(version) && Number(/version (\d+)/.exec(version)![1]) < 23) {
    assert.equal(written.proxies, undefined, `${version} has no "proxies"`);
    assert.match(readFileSync(dropIn, "utf8"), /^Environment="HTTP_PROXY=http:\/\/127\.0\.0\.1:65001"/m);
  }

  // A file this dockerd refuses (a key it does not know) is never written.
  const refused = JSON.stringify({ "no-such-directive": true });
  writeFileSync(file, refused);
  const bad = await runDamselfly(["init", "docker", "--daemon-json", file, "--dockerd", dockerd, "--systemd-drop-in", join(dir, "other.conf")]);
  assert.equal(bad.code, 3, bad.stderr);
  assert.match(bad.stderr, /DF_ERR_CONFIG: dockerd .* would not start with the new daemon\.json: .*no-such-directive.*; the file was not changed/);
  assert.equal(readFileSync(file, "utf8"), refused);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith("daemon.json.") || f === "other.conf").length,
    1,
    `only the first run's backup: ${readdirSync(dir).join(",")}`,
  );
});
