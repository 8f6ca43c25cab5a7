// `damselfly init containerd` detecting a node's containerd from config files
// of every layout (1.6/1.7 version 1/2, 2.x version 3) and a stand-in binary
// that reports a version: the effective config_path (including 2.2's default),
// the report when it is unset, the 2.1+ transfer-service case, minimal edits
// that keep comments, and that nothing restarts without --restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseContainerdVersion } from "../../src/cli/init/containerd-config.js";
import { editConfig } from "../../src/cli/init/containerd-edit.js";
import type { Report } from "../../src/cli/init/containerd-run.js";
import { ERROR_CODES } from "../../src/common/error-codes.js";
import { runDamselfly } from "../helpers/procs.js";

interface Node {
  dir: string;
  config: string;
  bin: string;
  marker: string;
}

// A node: config.toml with `text`, a containerd stand-in answering --version
// with `version` (none: no binary), and a restart command leaving a marker.
function node(t: { after(fn: () => unknown): void }, text: string | undefined, version?: string): Node {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-onboard-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, "config.toml");
  if (text !== undefined) writeFileSync(config, text);
  const bin = join(dir, "containerd");
  if (version !== undefined) {
    writeFileSync(bin, `#!/bin/sh\n[ "$1" = --version ] && echo "containerd github.com/containerd/containerd/v2 v${version} 0123abc"\n`);
    chmodSync(bin, 0o755);
  }
  return { dir, config, bin, marker: join(dir, "restarted") };
}

async function onboard(n: Node, ...extra: string[]): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await runDamselfly([
    "init",
    "containerd",
    "--json",
    "--config",
    n.config,
    "--containerd",
    n.bin,
    "--restart-command",
    `echo restarting; touch ${n.marker}`,
    ...extra,
  ]);
  return { code: r.code, report: JSON.parse(r.stdout.toString()) as Report, stderr: r.stderr };
}

const V17_SET = `version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri".registry]
  # hosts.toml per registry
  config_path = "CERTS"
`;

const V17_UNSET = `# node config, managed by hand
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9" # pinned
    [plugins."io.containerd.grpc.v1.cri".registry]
      # TODO: mirrors
      [plugins."io.containerd.grpc.v1.cri".registry.headers]
        X-Team = ["infra"]
  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
`;

const V3_22 = `version = 3

# images: keep the defaults
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs' # fast

[plugins.'io.containerd.cri.v1.runtime']
  enable_cdi = true
`;

test("1.7 with config_path set: hosts.toml written there, no edit, no restart, exit 0", async (t) => {
  const n = node(t, "", "1.7.27");
  const certs = join(n.dir, "certs.d");
  writeFileSync(n.config, V17_SET.replace("CERTS", certs));
  // --config-path: a broken detection must not write to the real /etc/containerd.
  const { code, report, stderr } = await onboard(n, "--restart", "--registry", "docker.io", "--config-path", certs);
  assert.equal(code, 0, stderr);
  assert.equal(report.status, "configured");
  assert.deepEqual(report.configPath, { value: certs, source: "config", dirs: [certs] });
  assert.equal(report.config.layout, "v2");
  assert.equal(report.hostsDir, certs);
  assert.match(readFileSync(join(certs, "docker.io", "hosts.toml"), "utf8"), /X-Damselfly-Registry/);
  assert.equal(readFileSync(n.config, "utf8"), V17_SET.replace("CERTS", certs));
  assert.equal(existsSync(n.marker), false, "restart command ran");
  assert.match(report.summary, /no restart needed/);
});

test("1.7 without config_path: the report says why a restart is needed, exit 11, nothing changed", async (t) => {
  const n = node(t, V17_UNSET, "1.7.27");
  const { code, report, stderr } = await onboard(n, "--config-path", join(n.dir, "certs.d"));
  assert.equal(code, ERROR_CODES.DF_ERR_RESTART_REQUIRED.exitCode, stderr);
  assert.equal(code, 11);
  assert.match(stderr, /^damselfly: DF_ERR_RESTART_REQUIRED: /m);
  assert.equal(report.status, "restart-required");
  assert.equal(report.configPath.source, "unset");
  assert.deepEqual(
    report.issues.map((i) => i.code),
    ["config-path-unset"],
  );
  assert.match(report.issues[0].message, /\[plugins\."io\.containerd\.grpc\.v1\.cri"\]\.registry|\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]/);
  assert.equal(report.restart.done, false);
  assert.equal(existsSync(n.marker), false);
  assert.equal(readFileSync(n.config, "utf8"), V17_UNSET);
  // The files are written anyway: read once containerd restarts.
  assert.ok(existsSync(join(n.dir, "certs.d", "_default", "hosts.toml")));
});

test("1.7 without config_path, --restart: one line added in the registry table, comments kept, backup, restart run", async (t) => {
  const n = node(t, V17_UNSET, "1.7.27");
  const certs = join(n.dir, "certs.d");
  const { code, report, stderr } = await onboard(n, "--restart", "--config-path", certs);
  assert.equal(code, 0, stderr);
  assert.equal(report.status, "restarted");
  assert.equal(report.restart.done, true);
  assert.match(report.restart.why ?? "", /reads config\.toml only at start \(config-path-unset\)/);
  assert.equal(report.restart.output, "restarting");
  assert.ok(existsSync(n.marker));
  const expected = V17_UNSET.replace(
    `    [plugins."io.containerd.grpc.v1.cri".registry]\n`,
    `    [plugins."io.containerd.grpc.v1.cri".registry]\n      config_path = ${JSON.stringify(certs)}\n`,
  );
  assert.equal(readFileSync(n.config, "utf8"), expected);
  const backups = readdirSync(n.dir).filter((f) => f.startsWith("config.toml.damselfly-backup-"));
  assert.equal(backups.length, 1);
  assert.equal(readFileSync(join(n.dir, backups[0]), "utf8"), V17_UNSET);
  // A second run finds it configured and restarts nothing.
  rmSync(n.marker);
  const again = await onboard(n, "--restart", "--config-path", certs);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.report.status, "configured");
  assert.equal(existsSync(n.marker), false);
});

test("1.6 config version 1: [plugins.cri.registry] config_path is read", async (t) => {
  const n = node(t, "", "1.6.20");
  const certs = join(n.dir, "certs.d");
  writeFileSync(n.config, `[plugins.cri.registry]\n  config_path = ${JSON.stringify(`${certs}:/etc/docker/certs.d`)}\n`);
  const { code, report, stderr } = await onboard(n, "--dry-run");
  assert.equal(code, 0, stderr);
  assert.equal(report.config.layout, "v1");
  assert.equal(report.config.registryTable, "[plugins.cri.registry]");
  assert.deepEqual(report.configPath.dirs, [certs, "/etc/docker/certs.d"]);
  // 1.6 pulls itself and reads every directory of the list.
  assert.equal(report.imagePull.transferService, false);
  assert.equal(report.hostsDir, certs);
});

test("2.0 config version 3 without config_path: unset (no default before 2.2)", async (t) => {
  const n = node(t, V3_22, "2.0.5");
  const { code, report } = await onboard(n, "--dry-run");
  assert.equal(code, 11);
  assert.equal(report.config.layout, "v3");
  assert.equal(report.config.registryTable, `[plugins."io.containerd.cri.v1.images".registry]`);
  assert.equal(report.configPath.source, "unset");
  assert.equal(report.imagePull.transferService, false);
});

test("2.2 without config_path: the default path list, which the transfer service cannot read; --restart sets use_local_image_pull", async (t) => {
  const n = node(t, V3_22, "2.2.1");
  // --dry-run: the hosts dir is the real /etc/containerd/certs.d here.
  const first = await onboard(n, "--dry-run");
  assert.equal(first.code, 11, first.stderr);
  assert.deepEqual(first.report.configPath, {
    value: "/etc/containerd/certs.d:/etc/docker/certs.d",
    source: "default",
    dirs: ["/etc/containerd/certs.d", "/etc/docker/certs.d"],
  });
  assert.equal(first.report.imagePull.transferService, true);
  assert.deepEqual(
    first.report.issues.map((i) => i.code),
    ["transfer-service-path-list"],
  );
  assert.match(first.report.issues[0].fix, /use_local_image_pull = true in \[plugins\."io\.containerd\.cri\.v1\.images"\]/);
  // Dry run with --restart: the edit is shown, nothing written, no restart.
  const dry = await runDamselfly([
    "init",
    "containerd",
    "--config",
    n.config,
    "--containerd",
    n.bin,
    "--restart",
    "--dry-run",
    "--restart-command",
    `touch ${n.marker}`,
  ]);
  assert.equal(dry.code, 11);
  assert.ok(
    dry.stdout
      .toString()
      .includes(V3_22.replace("[plugins.'io.containerd.cri.v1.images']\n", "[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true\n")),
    dry.stdout.toString(),
  );
  assert.equal(readFileSync(n.config, "utf8"), V3_22);
  assert.equal(existsSync(n.marker), false);
});

test("2.1: a single config_path directory is read by the transfer service; a list with a local-pull setting is read too", async (t) => {
  const single = node(t, `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n`, "2.1.4");
  const a = await onboard(single, "--dry-run");
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.report.imagePull.transferService, true);
  assert.deepEqual(a.report.issues, []);
  const list = `version = 3\n[plugins."io.containerd.cri.v1.images"]\n  discard_unpacked_layers = true\n  [plugins."io.containerd.cri.v1.images".registry]\n    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"\n`;
  const b = await onboard(node(t, list, "2.1.4"), "--dry-run");
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.report.imagePull.transferService, false);
  assert.match(b.report.imagePull.reason, /discard_unpacked_layers = true/);
  const c = await onboard(node(t, list.replace("discard_unpacked_layers = true", "use_local_image_pull = true"), "2.1.4"), "--dry-run");
  assert.equal(c.code, 0, c.stderr);
  const d = await onboard(node(t, list.replace("discard_unpacked_layers = true", "snapshotter = 'overlayfs'"), "2.1.4"), "--dry-run");
  assert.equal(d.code, 11, d.stderr);
  assert.deepEqual(
    d.report.issues.map((i) => i.code),
    ["transfer-service-path-list"],
  );
});

test("deprecated registry.mirrors without config_path: action required by hand (exit 3), no edit even with --restart", async (t) => {
  const text = `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://mirror.example"]\n`;
  const n = node(t, text, "1.7.27");
  const { code, report } = await onboard(n, "--restart", "--config-path", join(n.dir, "certs.d"));
  assert.equal(code, 3);
  assert.equal(report.status, "action-required");
  assert.deepEqual(
    report.issues.map((i) => i.code),
    ["deprecated-registry-conflict"],
  );
  assert.equal(readFileSync(n.config, "utf8"), text);
  assert.equal(existsSync(n.marker), false);
});

test("imports: config_path set in conf.d is found; an explicit --config-path elsewhere is refused", async (t) => {
  const n = node(t, `version = 2\nimports = ["conf.d/*.toml"]\n`, "1.7.27");
  mkdirSync(join(n.dir, "conf.d"));
  const certs = join(n.dir, "certs.d");
  writeFileSync(join(n.dir, "conf.d", "10-registry.toml"), `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${certs}"\n`);
  // --dry-run: were the import missed, the files would go to /etc/containerd/certs.d.
  const ok = await onboard(n, "--dry-run");
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(ok.report.config.files, [n.config, join(n.dir, "conf.d", "10-registry.toml")]);
  assert.equal(ok.report.hostsDir, certs);
  const elsewhere = await onboard(n, "--config-path", join(n.dir, "other"));
  assert.equal(elsewhere.code, 3);
  assert.deepEqual(
    elsewhere.report.issues.map((i) => i.code),
    ["hosts-dir-not-read"],
  );
});

test("no containerd binary: the version comes from the config file; a failing restart command leaves exit 11", async (t) => {
  const n = node(t, V3_22);
  const { code, report, stderr } = await onboard(n, "--restart", "--restart-command", "echo no systemd >&2; exit 1", "--config-path", join(n.dir, "c"));
  assert.equal(code, 11, stderr);
  assert.equal(report.containerd.versionSource, "config");
  assert.match(report.imagePull.reason, /assuming 2\.1\+/);
  assert.match(stderr, /"echo no systemd >&2; exit 1" failed \(no systemd\); restart containerd by hand/);
  // The edit was made (with its backup) before the restart was tried.
  assert.match(readFileSync(n.config, "utf8"), /\[plugins\."io\.containerd\.cri\.v1\.images"\.registry\]\n {2}config_path = /);
});

test("no containerd binary, a version 2 file with a config_path list: 2.1+ is assumed, the transfer-service case reported", async (t) => {
  const n = node(t, `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"\n`);
  const { code, report } = await onboard(n, "--dry-run");
  assert.equal(code, 11);
  assert.equal(report.containerd.version, "unknown (config version 2)");
  assert.equal(report.imagePull.transferService, true);
  assert.deepEqual(
    report.issues.map((i) => i.code),
    ["transfer-service-path-list"],
  );
  assert.deepEqual(report.edits[0].table, ["plugins", "io.containerd.cri.v1.images"]);
});

test("containerd --version outputs of Debian, containerd.io and upstream builds", () => {
  assert.equal(parseContainerdVersion("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n")?.text, "1.6.20");
  assert.deepEqual(
    { ...parseContainerdVersion("containerd containerd.io v2.1.5 fcd43222d6b07379a4be9786bda52438f0dd16a1") },
    { major: 2, minor: 1, patch: 5, source: "binary", text: "2.1.5" },
  );
  assert.equal(parseContainerdVersion("containerd: command not found"), undefined);
});

test("edits refuse files a one-line edit would break (inline tables), and create missing tables at the end", () => {
  const inline = `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  registry = { headers = {} }\n`;
  assert.throws(
    () => editConfig("c.toml", inline, [{ table: ["plugins", "io.containerd.grpc.v1.cri", "registry"], key: "config_path", value: "/x" }]),
    /DF_ERR_CONFIG|cannot add/,
  );
  // A header-like line inside a multi-line string: the edit would land in the
  // string; the parse check refuses it.
  const inString = `[a]\n  note = """\n[plugins.x.registry]\n"""\n`;
  assert.throws(() => editConfig("c.toml", inString, [{ table: ["plugins", "x", "registry"], key: "config_path", value: "/x" }]), /cannot add/);
  const out = editConfig("c.toml", "# top\nversion = 3\n", [{ table: ["plugins", "io.containerd.cri.v1.images"], key: "use_local_image_pull", value: true }]);
  assert.equal(out, `# top\nversion = 3\n\n[plugins."io.containerd.cri.v1.images"]\n  use_local_image_pull = true\n`);
  const replaced = editConfig("c.toml", `[a]\n  # c\n  config_path = "" # old\n  b = 1\n`, [{ table: ["a"], key: "config_path", value: "/d" }]);
  assert.equal(replaced, `[a]\n  # c\n  config_path = "/d"\n  b = 1\n`);
});
