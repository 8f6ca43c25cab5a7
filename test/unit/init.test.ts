// `damselfly init containerd|docker|podman`: the exact files written, merges
// that keep the user's settings, backups, idempotence, dry runs and refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DamselflyError } from "../../src/common/errors.js";
import { parseProxyUrl, parseRegistries } from "../../src/cli/init/endpoints.js";
import { applyChanges, backupPath } from "../../src/cli/init/files.js";
import { mergeDaemonJson } from "../../src/cli/init/docker.js";
import { BLOCK_BEGIN, BLOCK_END, parsePodmanRegistries, updateRegistriesConf } from "../../src/cli/init/podman.js";
import { readStringAssignment, tomlString } from "../../src/cli/init/toml.js";
import { runDamselfly } from "../helpers/procs.js";

function tmp(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-init-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Every file under dir, relative, sorted.
function listFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();
}

// A stand-in for the engine's dockerd: `--version` says `version`,
// `--validate` exits with `validates`, and the check of engines before 23.0
// (test/integration/init-docker.test.ts runs the real one) finds every key known.
function fakeDockerd(dir: string, version = "24.0.7", validates = 0): string {
  const bin = join(dir, "dockerd");
  writeFileSync(
    bin,
    `#!/bin/sh\ncase "$1" in\n--version) echo "Docker version ${version}, build 0000000";;\n--validate) echo "unable to configure the Docker daemon" >&2; exit ${validates};;\n--config-file) echo "directives are specified both as a flag and in the configuration file: pidfile" >&2; exit 1;;\n*) exit 99;;\nesac\n`,
  );
  chmodSync(bin, 0o755);
  return bin;
}

const DEFAULT_HOSTS = `[host."http://127.0.0.1:65001"]
  capabilities = ["pull", "resolve"]
`;

const DOCKER_HUB_HOSTS = `server = "https://registry-1.docker.io"

[host."http://127.0.0.1:65001"]
  capabilities = ["pull", "resolve"]
  [host."http://127.0.0.1:65001".header]
    X-Damselfly-Registry = ["https://registry-1.docker.io"]
`;

const PLAIN_HTTP_HOSTS = `server = "http://registry.example:5000"

[host."http://127.0.0.1:65001"]
  capabilities = ["pull", "resolve"]
  [host."http://127.0.0.1:65001".header]
    X-Damselfly-Registry = ["http://registry.example:5000"]
`;

test("containerd without --registry writes only _default/hosts.toml and says what to restart", async (t) => {
  const dir = tmp(t);
  const r = await runDamselfly(["init", "containerd", "--config-path", join(dir, "certs.d")]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(listFiles(dir), ["certs.d/_default/hosts.toml"]);
  assert.equal(readFileSync(join(dir, "certs.d/_default/hosts.toml"), "utf8"), DEFAULT_HOSTS);
  const out = r.stdout.toString();
  assert.match(out, new RegExp(`^wrote: ${join(dir, "certs.d/_default/hosts.toml")}$`, "m"));
  assert.ok(
    out.includes(
      `containerd: set config_path = "${dir}/certs.d" under [plugins."io.containerd.grpc.v1.cri".registry] in /etc/containerd/config.toml and restart containerd; ctr users pass --hosts-dir ${dir}/certs.d`,
    ),
    out,
  );
});

test("containerd with registries: one hosts.toml each, docker.io mapped, http scheme kept, no _default", async (t) => {
  const dir = tmp(t);
  const r = await runDamselfly(["init", "containerd", "--config-path", dir, "--registry", "docker.io", "--registry", "http://Registry.Example:5000,docker.io"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(listFiles(dir), ["docker.io/hosts.toml", "registry.example:5000/hosts.toml"]);
  assert.equal(readFileSync(join(dir, "docker.io/hosts.toml"), "utf8"), DOCKER_HUB_HOSTS);
  assert.equal(readFileSync(join(dir, "registry.example:5000/hosts.toml"), "utf8"), PLAIN_HTTP_HOSTS);
});

test("containerd: --proxy changes the host; a rewrite backs up the old file", async (t) => {
  const dir = tmp(t);
  assert.equal((await runDamselfly(["init", "containerd", "--config-path", dir, "--registry", "https://quay.io"])).code, 0);
  const r = await runDamselfly(["init", "containerd", "--config-path", dir, "--registry", "quay.io", "--proxy", "https://10.0.0.1:8443/"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    readFileSync(join(dir, "quay.io/hosts.toml"), "utf8"),
    `server = "https://quay.io"\n\n[host."https://10.0.0.1:8443"]\n  capabilities = ["pull", "resolve"]\n  [host."https://10.0.0.1:8443".header]\n    X-Damselfly-Registry = ["https://quay.io"]\n`,
  );
  const backups = listFiles(dir).filter((f) => f.startsWith("quay.io/hosts.toml.damselfly-backup-"));
  assert.equal(backups.length, 1, listFiles(dir).join(","));
  assert.match(backups[0], /\.damselfly-backup-\d{14}$/);
  assert.match(readFileSync(join(dir, backups[0]), "utf8"), /host\."http:\/\/127\.0\.0\.1:65001"/);
  assert.match(r.stdout.toString(), new RegExp(`^backup: ${join(dir, backups[0])}$`, "m"));
});

test("docker: merge keeps unrelated keys and mirrors, sets proxies, backs up; a second run changes nothing", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "daemon.json");
  const original = JSON.stringify({
    "log-driver": "journald",
    "registry-mirrors": ["https://mirror.gcr.io"],
    proxies: { "no-proxy": "*.corp" },
    features: { buildkit: true },
  });
  writeFileSync(file, original);
  const dockerd = ["--dockerd", fakeDockerd(tmp(t))];
  const r = await runDamselfly(["init", "docker", "--daemon-json", file, ...dockerd]);
  assert.equal(r.code, 0, r.stderr);
  const text = readFileSync(file, "utf8");
  assert.deepEqual(JSON.parse(text), {
    "log-driver": "journald",
    "registry-mirrors": ["http://127.0.0.1:65001", "https://mirror.gcr.io"],
    proxies: { "no-proxy": "*.corp", "http-proxy": "http://127.0.0.1:65001", "https-proxy": "http://127.0.0.1:65001" },
    features: { buildkit: true },
  });
  assert.equal(text, JSON.stringify(JSON.parse(text), null, 2) + "\n", "2-space indent");
  const backups = listFiles(dir).filter((f) => f.startsWith("daemon.json.damselfly-backup-"));
  assert.equal(backups.length, 1);
  assert.equal(readFileSync(join(dir, backups[0]), "utf8"), original);
  assert.match(r.stdout.toString(), /^restart docker: systemctl restart docker$/m);

  const again = await runDamselfly(["init", "docker", "--daemon-json", file, ...dockerd]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(readFileSync(file, "utf8"), text);
  assert.equal(listFiles(dir).length, 2, "no second backup of an unchanged file");
  assert.match(again.stdout.toString(), /^unchanged: /m);
});

test("docker: a missing file is created (with its directory) with default no-proxy", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "etc/docker/daemon.json");
  const r = await runDamselfly(["init", "docker", "--daemon-json", file, "--proxy", "http://192.168.1.5:65001", "--dockerd", fakeDockerd(tmp(t))]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    readFileSync(file, "utf8"),
    `{\n  "registry-mirrors": [\n    "http://192.168.1.5:65001"\n  ],\n  "proxies": {\n    "http-proxy": "http://192.168.1.5:65001",\n    "https-proxy": "http://192.168.1.5:65001",\n    "no-proxy": "localhost,127.0.0.1"\n  }\n}\n`,
  );
  assert.deepEqual(listFiles(dir), ["etc/docker/daemon.json"]);
});

test('docker before Engine 23.0 (or no dockerd): no "proxies" key (an earlier run\'s is removed); the proxy goes in a systemd drop-in', async (t) => {
  for (const dockerd of [fakeDockerd(tmp(t), "20.10.24+dfsg1"), join(tmp(t), "no-dockerd-here")]) {
    const dir = tmp(t);
    const file = join(dir, "daemon.json");
    const dropIn = join(dir, "docker.service.d/damselfly-proxy.conf");
    writeFileSync(file, JSON.stringify({ "log-driver": "journald", proxies: { "http-proxy": "http://127.0.0.1:65001", "no-proxy": "*.corp" } }));
    const r = await runDamselfly(["init", "docker", "--daemon-json", file, "--dockerd", dockerd, "--systemd-drop-in", dropIn]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { "log-driver": "journald", "registry-mirrors": ["http://127.0.0.1:65001"] });
    assert.equal(
      readFileSync(dropIn, "utf8"),
      '# Written by damselfly init docker: the Docker Engine\'s HTTP(S) proxy (before Engine 23.0,\n# daemon.json has no "proxies").\n[Service]\nEnvironment="HTTP_PROXY=http://127.0.0.1:65001" "HTTPS_PROXY=http://127.0.0.1:65001" "NO_PROXY=*.corp"\n',
    );
    assert.match(r.stdout.toString(), /^restart docker: systemctl daemon-reload && systemctl restart docker$/m);
    assert.match(r.stdout.toString(), new RegExp(`the engine's proxy is set in ${dropIn.replace(/[.]/g, "\\.")}`));
  }
});

test("docker: a daemon.json the engine's dockerd refuses is not written", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "daemon.json");
  writeFileSync(file, '{"debug": true}\n');
  const r = await runDamselfly(["init", "docker", "--daemon-json", file, "--dockerd", fakeDockerd(tmp(t), "24.0.7", 1)]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(
    r.stderr,
    /^damselfly: DF_ERR_CONFIG: dockerd 24\.0\.7 .* would not start with the new daemon\.json: unable to configure the Docker daemon; the file was not changed$/m,
  );
  assert.deepEqual(listFiles(dir), ["daemon.json"], "no backup, no temporary file");
  assert.equal(readFileSync(file, "utf8"), '{"debug": true}\n');
});

test("docker: an existing mirror entry (trailing slash) is not added twice", () => {
  const proxy = parseProxyUrl("http://127.0.0.1:65001");
  const out = JSON.parse(mergeDaemonJson("f", JSON.stringify({ "registry-mirrors": ["https://a.example", "http://127.0.0.1:65001/"] }), proxy)) as Record<
    string,
    unknown
  >;
  assert.deepEqual(out["registry-mirrors"], ["https://a.example", "http://127.0.0.1:65001/"]);
});

test("docker: invalid or wrongly shaped JSON is a DF_ERR_CONFIG error and the file stays untouched", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "daemon.json");
  writeFileSync(file, '{"log-driver": "journald",');
  const r = await runDamselfly(["init", "docker", "--daemon-json", file, "--dockerd", fakeDockerd(tmp(t))]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, new RegExp(`^damselfly: DF_ERR_CONFIG: ${file}: not valid JSON`, "m"));
  assert.equal(readFileSync(file, "utf8"), '{"log-driver": "journald",');
  assert.deepEqual(listFiles(dir), ["daemon.json"], "no backup, no temporary file");

  for (const bad of ["[1]", '{"registry-mirrors": "x"}', '{"proxies": []}', '{"proxies": {"no-proxy": 1}}']) {
    assert.throws(
      () => mergeDaemonJson("daemon.json", bad, parseProxyUrl("http://127.0.0.1:65001")),
      (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_CONFIG",
      bad,
    );
  }
});

const PODMAN_BLOCK = `${BLOCK_BEGIN}
[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "127.0.0.1:65001/docker.io"
insecure = true

[[registry]]
prefix = "quay.io"
location = "quay.io"

[[registry.mirror]]
location = "127.0.0.1:65001/quay.io"
insecure = true
${BLOCK_END}
`;

test("podman: the block is appended, the rest kept byte for byte; a second run yields the same file", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "registries.conf");
  const user =
    'unqualified-search-registries = ["docker.io"]\n\n[[registry]]\nprefix = "ghcr.io"\nlocation = "ghcr.io"\n\n[[registry.mirror]]\nlocation = "docker.io"';
  writeFileSync(file, user);
  const args = ["init", "podman", "--registries-conf", file, "--registry", "docker.io,quay.io"];
  const r = await runDamselfly(args);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(file, "utf8"), `${user}\n\n${PODMAN_BLOCK}`);
  assert.match(r.stdout.toString(), /^Podman reads registries\.conf on each run; CRI-O: systemctl restart crio$/m);
  const again = await runDamselfly(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(readFileSync(file, "utf8"), `${user}\n\n${PODMAN_BLOCK}`);
  assert.equal(listFiles(dir).filter((f) => f.includes(".damselfly-backup-")).length, 1);
});

test("podman: an existing block is replaced in place, text after it kept; default registry docker.io", () => {
  const proxy = parseProxyUrl("http://127.0.0.1:65001");
  const before = "# mine\n";
  const after = '\n[aliases]\n"alp" = "docker.io/library/alpine"\n';
  const old = `${before}${PODMAN_BLOCK}${after}`;
  const next = updateRegistriesConf("f", old, parseProxyUrl("https://mirror.local:443"), parsePodmanRegistries(["docker.io"]));
  assert.equal(
    next,
    `${before}${BLOCK_BEGIN}\n[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n\n[[registry.mirror]]\nlocation = "mirror.local:443/docker.io"\n${BLOCK_END}\n${after}`,
    "https proxy: no insecure line",
  );
  // Idempotent on its own output, and appending to an empty file adds nothing else.
  assert.equal(updateRegistriesConf("f", next, parseProxyUrl("https://mirror.local:443"), parsePodmanRegistries(["docker.io"])), next);
  assert.equal(updateRegistriesConf("f", undefined, proxy, parsePodmanRegistries(["docker.io", "quay.io"])), PODMAN_BLOCK);
});

test("podman: a [[registry]] for the same prefix outside the block is refused and the file kept", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "registries.conf");
  const user = '[[registry]]\nprefix = "docker.io"\nlocation = "mirror.gcr.io"\n';
  writeFileSync(file, user);
  const r = await runDamselfly(["init", "podman", "--registries-conf", file]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /^damselfly: DF_ERR_CONFIG: .*line 1: a \[\[registry\]\] for "docker\.io" already exists outside the damselfly block/m);
  assert.equal(readFileSync(file, "utf8"), user);
  assert.deepEqual(listFiles(dir), ["registries.conf"]);

  const proxy = parseProxyUrl("http://127.0.0.1:65001");
  const hub = parsePodmanRegistries(["docker.io"]);
  const refused = (text: string) => () => updateRegistriesConf("f", text, proxy, hub);
  const isConfig = (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_CONFIG";
  // Without a prefix, the location is the prefix.
  assert.throws(refused("[[registry]]\nlocation = 'docker.io'\n"), isConfig);
  // Version 1 tables cannot be mixed with [[registry]].
  assert.throws(refused('[registries.search]\nregistries = ["docker.io"]\n'), isConfig);
  // A broken block is not guessed at.
  assert.throws(refused(`${BLOCK_BEGIN}\n[[registry]]\n`), isConfig);
  // Not duplicates: a longer prefix, a mirror's location, a comment.
  const fine =
    '[[registry]]\nprefix = "docker.io/library"\nlocation = "docker.io"\n\n[[registry]]\nprefix = "quay.io"\n[[registry.mirror]]\nlocation = "docker.io"\n# prefix = "docker.io"\n';
  assert.ok(updateRegistriesConf("f", fine, proxy, hub).startsWith(fine));
});

test("podman: registries with a port, a scheme or no dot are usage errors", async () => {
  for (const [reg, re] of [
    ["registry.example:5000", /cannot mirror registry\.example:5000 for podman: .*port.*--registry-mirror/],
    ["https://quay.io", /without a scheme/],
    ["myregistry", /needs a dot/],
  ] as const) {
    assert.throws(
      () => parsePodmanRegistries([reg]),
      (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_USAGE" && re.test(e.message),
      reg,
    );
  }
  assert.deepEqual(
    parsePodmanRegistries(["localhost", "Docker.IO"]).map((r) => r.name),
    ["localhost", "docker.io"],
  );
  const r = await runDamselfly(["init", "podman", "--registries-conf", "/nonexistent/registries.conf", "--registry", "reg.example:5000"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^damselfly: DF_ERR_USAGE: cannot mirror reg\.example:5000/m);
});

test("--dry-run prints every path and full content and writes nothing", async (t) => {
  const dir = tmp(t);
  const daemonJson = join(dir, "daemon.json");
  writeFileSync(daemonJson, '{"debug": true}\n');
  const runs: [string[], string[]][] = [
    [
      ["containerd", "--config-path", join(dir, "certs.d"), "--registry", "docker.io"],
      [`==> ${join(dir, "certs.d/docker.io/hosts.toml")} <==\n${DOCKER_HUB_HOSTS}`],
    ],
    [["docker", "--daemon-json", daemonJson, "--dockerd", fakeDockerd(tmp(t))], [`==> ${daemonJson} <==\n{\n  "debug": true,\n  "registry-mirrors": [`]],
    [
      ["podman", "--registries-conf", join(dir, "registries.conf")],
      [`==> ${join(dir, "registries.conf")} <==\n${BLOCK_BEGIN}\n[[registry]]\nprefix = "docker.io"`],
    ],
  ];
  for (const [args, expected] of runs) {
    const r = await runDamselfly(["init", ...args, "--dry-run"]);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.toString();
    for (const e of expected) assert.ok(out.includes(e), `${args[0]}:\n${out}`);
    assert.match(out, /^dry run: nothing was written$/m);
  }
  assert.deepEqual(listFiles(dir), ["daemon.json"]);
  assert.equal(readFileSync(daemonJson, "utf8"), '{"debug": true}\n');
});

test("bad flags: --proxy without port or with a path, bad --registry, unknown flag: exit 2", async () => {
  for (const [args, code] of [
    [["docker", "--proxy", "http://127.0.0.1", "--dry-run"], "DF_ERR_INVALID_URL"],
    [["docker", "--proxy", "ftp://127.0.0.1:21", "--dry-run"], "DF_ERR_INVALID_URL"],
    [["podman", "--proxy", "http://127.0.0.1:65001/v2", "--dry-run"], "DF_ERR_INVALID_URL"],
    [["containerd", "--registry", "docker.io/library", "--dry-run"], "DF_ERR_USAGE"],
    [["containerd", "--registry", "http://r.example,https://r.example", "--dry-run"], "DF_ERR_USAGE"],
    [["containerd", "--no-such-flag"], "DF_ERR_USAGE"],
    [["nerdctl"], "DF_ERR_USAGE"],
  ] as const) {
    const r = await runDamselfly(["init", ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^damselfly: ${code}: `, "m"), args.join(" "));
  }
});

test("endpoints: explicit ports are kept, schemes default to https", () => {
  assert.deepEqual(parseProxyUrl("HTTP://127.0.0.1:65001/"), { scheme: "http", hostPort: "127.0.0.1:65001", url: "http://127.0.0.1:65001" });
  assert.equal(parseProxyUrl("https://[::1]:443").url, "https://[::1]:443");
  assert.deepEqual(
    parseRegistries(["r.example:443", "http://localhost:5000", "[::1]:5000"]).map((r) => `${r.scheme}://${r.name}`),
    ["https://r.example:443", "http://localhost:5000", "https://[::1]:5000"],
  );
});

test("TOML strings are escaped; assignments read back", () => {
  assert.equal(tomlString('a"b\\c\nd\u0001'), '"a\\"b\\\\c\\nd\\u0001"');
  assert.equal(readStringAssignment('prefix = "docker.io" # hub', "prefix"), "docker.io");
  assert.equal(readStringAssignment("prefix='quay.io'", "prefix"), "quay.io");
  assert.equal(readStringAssignment('"location" = "a\\"b"', "location"), 'a"b');
  assert.equal(readStringAssignment('prefixes = "x"', "prefix"), undefined);
});

test("backups never overwrite one another within the same second", async (t) => {
  const dir = tmp(t);
  const file = join(dir, "f.conf");
  writeFileSync(file, "v0\n");
  const now = new Date(2025, 0, 2, 3, 4, 5);
  let out = "";
  const o = { dryRun: false, now, out: { write: (s: string) => (out += s) } };
  await applyChanges([{ path: file, content: "v1\n" }], o);
  await applyChanges([{ path: file, content: "v2\n" }], o);
  assert.equal(backupPath(file, now), `${file}.damselfly-backup-20250102030405`);
  assert.equal(readFileSync(`${file}.damselfly-backup-20250102030405`, "utf8"), "v0\n");
  assert.equal(readFileSync(`${file}.damselfly-backup-20250102030405-1`, "utf8"), "v1\n");
  assert.equal(readFileSync(file, "utf8"), "v2\n");
  assert.equal(out.match(/^backup: /gm)?.length, 2, out);
});

// Root passes every permission check: as root, the command runs without its
// capabilities (setpriv), so a directory it owns but may not write to stops it
// as it stops any user. Runs wherever the checkout is (another user might not
// be able to enter it).
const WITHOUT_CAPABILITIES = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"];

test("permission denied is DF_ERR_OUTPUT (exit 8) and names the file", async (t) => {
  const dir = tmp(t);
  const locked = join(dir, "locked");
  mkdirSync(locked);
  chmodSync(locked, 0o500);
  const file = join(locked, "daemon.json");
  const r = await runDamselfly(["init", "docker", "--daemon-json", file], process.getuid?.() === 0 ? { prefix: WITHOUT_CAPABILITIES } : {});
  assert.equal(r.code, 8, r.stderr);
  assert.match(r.stderr, new RegExp(`^damselfly: DF_ERR_OUTPUT: cannot \\w+ ${file}: permission denied \\(EACCES\\)`, "m"));
  assert.equal(existsSync(file), false);
});
