// The nested config: every flag `--help` listed before the config was nested
// is still accepted, flat YAML keys and env names of before still set their
// key, secrets come from the environment only and are never printed, and the
// dynamic cluster settings table agrees with manager.proto and the schemas.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { ScalarType } from "@bufbuild/protobuf";
import { envName, fieldsOf, isField, loadConfig, valueAt, type Schema } from "../../src/common/config.js";
import { DamselflyError } from "../../src/common/errors.js";
import { daemonSchema, managerSchema, schedulerSchema, upSchema } from "../../src/common/schemas.js";
import { CLUSTER_CONFIG } from "../../src/common/cluster-config.js";
import { addSchemaOptions, loadCommandConfig } from "../../src/cli/options.js";
import { buildProgram } from "../../src/cli/main.js";
import { printable } from "../../src/cli/commands/config.js";
import { managerv1 } from "../../src/protocol/index.js";

// `bin/damselfly <cmd> --help` before the nested config (issue 18), flags only.
const FLAGS_BEFORE: Record<string, string> = {
  scheduler:
    "--listen --candidate-parent-limit --filter-parent-limit --back-to-source-limit --retry-limit --cold-start --seed-copy-delay --seed-wait --host-timeout --normal-upload-slots --seed-upload-slots --manager --cluster-id --advertise-ip --manager-interval --log-level --metrics-listen --config",
  daemon:
    "--seed --manager --cluster-id --manager-refresh --scheduler --data-dir --listen --upload-listen --proxy-listen --advertise-ip --hostname --upload-slots --upload-concurrency --super-seeding --no-super-seeding --pieces-in-flight --pieces-per-parent --piece-timeout --schedule-timeout --source-timeout --announce-interval --scheduler-connect-timeout --source-ca --registry-mirror --plain-http-registries --proxy-rules --proxy-intercept --proxy-ca-cert --proxy-ca-key --proxy-auth-ttl --proxy-min-p2p-size --proxy-prefetch --proxy-stall-timeout --log-level --metrics-listen --shutdown-timeout --total-download-rate-limit --total-upload-rate-limit --back-to-source-rate-limit --per-task-rate-limit --task-ttl --gc-interval --disk-gc-high-watermark --disk-gc-low-watermark --config",
  manager: "--listen --database --data-dir --session-ttl --scheduler-timeout --preheat-timeout --log-level --metrics-listen --config",
  preheat: "--manager --token --type --scope --platform -H --header --cluster-id --timeout --wait --no-wait --config",
  get: "-O --output --digest -H --header --tag --application --filter --priority --piece-length --timeout --disable-back-to-source --daemon --progress --no-progress --rate-limit --config",
  up: "--data-dir --scheduler-port --demo-port --no-demo --manager-port --no-manager --log-level",
};

test("every flag --help listed before is still accepted; the daemon's help stays short", async () => {
  const program = await buildProgram();
  for (const [name, flags] of Object.entries(FLAGS_BEFORE)) {
    const cmd = program.commands.find((c) => c.name() === name);
    assert.ok(cmd, name);
    for (const flag of flags.split(" ")) {
      assert.ok(
        cmd.options.some((o) => o.long === flag || o.short === flag),
        `${name} ${flag} is no longer accepted`,
      );
    }
  }
  const daemon = program.commands.find((c) => c.name() === "daemon")!;
  const visible = daemon.createHelp().visibleOptions(daemon);
  // 13 before TLS, plus --tls-ca, --tls-cert, --tls-key and --insecure, plus
  // the --s3-endpoint / --hf-endpoint defaults that issue 21's interface names.
  assert.ok(visible.length >= 10 && visible.length <= 20, `daemon --help lists ${visible.length} options`);
});

// A value each field type and check accepts, and what it parses to.
function sample(path: string, type: string): [string, unknown] {
  const special: Record<string, [string, unknown]> = {
    "manager.url": ["http://m:1", "http://m:1"],
    "proxy.registryMirror": ["http://r:1", "http://r:1"],
    logLevel: ["debug", "debug"],
    "gc.highWatermark": ["70%", "70%"],
    "gc.lowWatermark": ["50%", "50%"],
    "metrics.listen": ["127.0.0.1:9", "127.0.0.1:9"],
    "source.s3.endpoint": ["http://s3:1", "http://s3:1"],
    "source.hf.endpoint": ["http://hub:1", "http://hub:1"],
  };
  if (special[path]) return special[path];
  switch (type) {
    case "int":
      return ["7", 7];
    case "bytes":
      return ["5MiB", 5 * 1024 * 1024];
    case "duration":
      return ["7s", 7000];
    case "address":
      return ["127.0.0.1:7", "127.0.0.1:7"];
    case "list":
      return ["a:1", ["a:1"]];
    default:
      return ["x", "x"];
  }
}

test("each legacy flat name sets its nested key: as a (hidden) flag, an env var and a YAML key with a warning", () => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-config-legacy-"));
  try {
    for (const { path, field } of fieldsOf(daemonSchema)) {
      const legacy = field.legacy;
      if (!legacy || field.type === "bool") continue;
      const [raw, want] = sample(path, field.type);
      const cmd = new Command("d").exitOverride();
      addSchemaOptions(cmd, daemonSchema);
      cmd.parse([`--${legacy.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`, raw], { from: "user" });
      const warnings: string[] = [];
      assert.deepEqual(valueAt(loadCommandConfig(cmd, daemonSchema, "DAEMON", { env: {}, warn: (m) => warnings.push(m) }), path), want, `flag for ${path}`);
      assert.equal(warnings.length, field.flag ? 0 : 1, `${legacy}: a hidden flag is deprecated, a visible one is not`);
      assert.deepEqual(valueAt(loadConfig(daemonSchema, { envPrefix: "DAEMON", env: { [envName("DAEMON", legacy)]: raw } }), path), want, `env for ${path}`);
      const file = join(dir, "d.yaml");
      writeFileSync(file, `${legacy}: ${JSON.stringify(raw)}\n`);
      const yamlWarnings: string[] = [];
      assert.deepEqual(valueAt(loadConfig(daemonSchema, { envPrefix: "DAEMON", file, warn: (m) => yamlWarnings.push(m) }), path), want, `YAML for ${path}`);
      assert.match(yamlWarnings.join("\n"), new RegExp(`"${legacy}" is deprecated: use ${path.replace(".", "\\.")}`));
    }
    const cmd = new Command("d").exitOverride();
    addSchemaOptions(cmd, daemonSchema);
    cmd.parse(["--no-super-seeding", "--seed"], { from: "user" });
    const cfg = loadCommandConfig(cmd, daemonSchema, "DAEMON", { env: {} });
    assert.equal(cfg.upload.superSeeding, false);
    assert.equal(cfg.seed, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nested YAML and env; defaults < YAML < env < flag; unknown nested keys are errors", () => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-config-nested-"));
  try {
    const file = join(dir, "d.yaml");
    writeFileSync(file, "upload:\n  slots: 4\n  concurrency: 2\nmanager:\n  url: http://m:8080\nscheduler:\n  addresses: [a:1, b:2]\n");
    const cfg = loadConfig(daemonSchema, { envPrefix: "DAEMON", file, env: { DAMSELFLY_DAEMON_UPLOAD_CONCURRENCY: "3" }, flags: { scheduler: "c:3" } });
    assert.equal(cfg.upload.slots, 4);
    assert.equal(cfg.upload.concurrency, 3);
    assert.equal(cfg.manager.url, "http://m:8080");
    assert.deepEqual(cfg.scheduler.addresses, ["c:3"]);
    assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.upload));
    writeFileSync(file, "upload:\n  nope: 1\n");
    assert.throws(
      () => loadConfig(daemonSchema, { envPrefix: "DAEMON", file }),
      (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_CONFIG" && /unknown key "upload\.nope"/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no env name sets two different keys", () => {
  for (const [prefix, schema] of [
    ["DAEMON", daemonSchema],
    ["SCHEDULER", schedulerSchema],
    ["MANAGER", managerSchema],
    ["UP", upSchema],
  ] as const) {
    const owner = new Map<string, string>();
    for (const { path, field } of fieldsOf(schema as Schema)) {
      const names = field.envOnly ? [field.envOnly] : [envName(prefix, path), ...(field.legacy ? [envName(prefix, field.legacy)] : [])];
      for (const n of names) {
        assert.ok(!owner.has(n) || owner.get(n) === path, `${n}: ${owner.get(n)} and ${path}`);
        owner.set(n, path);
      }
    }
  }
});

test("secrets: env only, printed as (set)", () => {
  const cfg = loadConfig(daemonSchema, { envPrefix: "DAEMON", env: { DAMSELFLY_CLUSTER_TOKEN: "s3cret" } });
  assert.equal(cfg.security.clusterToken, "s3cret");
  const shown = JSON.stringify(printable(daemonSchema, cfg));
  assert.ok(!shown.includes("s3cret") && shown.includes('"clusterToken":"(set)"'), shown);
  const dir = mkdtempSync(join(tmpdir(), "damselfly-config-secret-"));
  try {
    const file = join(dir, "d.yaml");
    writeFileSync(file, "security:\n  clusterToken: x\n");
    assert.throws(() => loadConfig(daemonSchema, { envPrefix: "DAEMON", file }), /secret: set it in the environment \(DAMSELFLY_CLUSTER_TOKEN\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const m = loadConfig(managerSchema, { envPrefix: "MANAGER", env: { DAMSELFLY_ADMIN_PASSWORD: "pw", DAMSELFLY_MANAGER_ADMIN_PASSWORD: "no" } });
  assert.equal(m.security.adminPassword, "pw");
  assert.equal(JSON.stringify(printable(managerSchema, m)).includes("pw"), false);
});

test("the dynamic cluster settings table agrees with manager.proto and the component schemas", () => {
  const proto = { scheduler: managerv1.SchedulerClusterConfigSchema, daemon: managerv1.DaemonClusterConfigSchema };
  const schemas: Record<string, Schema> = { scheduler: schedulerSchema, daemon: daemonSchema };
  for (const [component, desc] of Object.entries(proto)) {
    const keys = CLUSTER_CONFIG.filter((k) => k.component === component).map((k) => k.key);
    assert.deepEqual(desc.fields.map((f) => f.localName).sort(), [...keys].sort(), component);
    for (const f of desc.fields) {
      assert.equal(f.fieldKind, "scalar");
      assert.ok(f.proto.proto3Optional, `${f.name} is optional (unset: the component's own value)`);
      assert.ok(f.fieldKind === "scalar" && [ScalarType.UINT32, ScalarType.UINT64].includes(f.scalar), f.name);
    }
  }
  for (const k of CLUSTER_CONFIG) {
    let node: Schema | undefined = schemas[k.component];
    const parts = k.configKey.split(".");
    for (const p of parts.slice(0, -1)) node = node?.[p] as Schema | undefined;
    const f = node?.[parts[parts.length - 1]!];
    assert.ok(f && isField(f) && (f.type === "int" || f.type === "bytes"), `${k.key}: ${k.component} config has no number ${k.configKey}`);
    if (k.component === "scheduler") assert.equal(k.configKey, k.key, "the scheduler applies its dynamic keys over its config by name");
  }
});
