// Schema -> commander flags -> config, and the precedence
// default < YAML file < env < flag.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { field, type Schema } from "../../src/common/config.js";
import { DamselflyError } from "../../src/common/errors.js";
import { daemonSchema, getSchema, schedulerSchema } from "../../src/common/schemas.js";
import { addConfigFileOption, addSchemaOptions, collectFlags, loadCommandConfig } from "../../src/cli/options.js";
import { formatBytes, formatDuration } from "../../src/cli/format.js";
import { parseHeaders } from "../../src/cli/get.js";

const schema = {
  name: field("string", "dflt", "a name"),
  count: field("int", 1, "a count"),
  enabled: field("bool", true, "on by default"),
  verbose: field("bool", false, "off by default", { short: "-v" }),
  wait: field("duration", 30_000, "a duration"),
  size: field("bytes", 1024, "a size"),
  listen: field("address", "127.0.0.1:1", "an address"),
  item: field("list", [] as string[], "a list"),
  header: field("list", [] as string[], "a list whose items may hold commas", { short: "-H" }),
} satisfies Schema;

function parse(argv: string[], withConfig = true): Command {
  const cmd = new Command("t").exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  addSchemaOptions(cmd, schema, { keepCommas: ["header"] });
  if (withConfig) addConfigFileOption(cmd);
  cmd.parse(argv, { from: "user" });
  return cmd;
}

function tmpYaml(text: string): { file: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-cli-options-"));
  const file = join(dir, "config.yaml");
  writeFileSync(file, text);
  return { file, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test("flags the user did not pass are not collected (no commander defaults)", () => {
  const cmd = parse([]);
  assert.deepEqual(collectFlags(cmd, schema), {});
  const cfg = loadCommandConfig(cmd, schema, "T", { env: {} });
  assert.equal(cfg.name, "dflt");
  assert.equal(cfg.count, 1);
  assert.equal(cfg.enabled, true);
  assert.equal(cfg.verbose, false);
  assert.equal(cfg.wait, 30_000);
  assert.deepEqual(cfg.item, []);
});

test("each type parses from its flag", () => {
  const cmd = parse(["--name", "x", "--count", "7", "--no-enabled", "-v", "--wait", "2s", "--size", "4MiB", "--listen", "0.0.0.0:99"]);
  const cfg = loadCommandConfig(cmd, schema, "T", { env: {} });
  assert.equal(cfg.name, "x");
  assert.equal(cfg.count, 7);
  assert.equal(cfg.enabled, false);
  assert.equal(cfg.verbose, true);
  assert.equal(cfg.wait, 2000);
  assert.equal(cfg.size, 4 * 1024 * 1024);
  assert.equal(cfg.listen, "0.0.0.0:99");
});

test("default-true bools have both --x and --no-x", () => {
  assert.equal(loadCommandConfig(parse(["--enabled"]), schema, "T", { env: { DAMSELFLY_T_ENABLED: "false" } }).enabled, true);
  assert.equal(loadCommandConfig(parse(["--no-enabled"]), schema, "T", { env: {} }).enabled, false);
});

test("list flags accumulate; commas split except for keepCommas keys", () => {
  const cmd = parse(["--item", "a", "--item", "b,c", "-H", "Accept: x, y", "--header", "X-A: 1"]);
  const cfg = loadCommandConfig(cmd, schema, "T", { env: {} });
  assert.deepEqual(cfg.item, ["a", "b", "c"]);
  assert.deepEqual(cfg.header, ["Accept: x, y", "X-A: 1"]);
});

test("precedence: default < YAML < env < flag", () => {
  const y = tmpYaml("name: from-yaml\ncount: 2\nwait: 5s\nitem: [y1, y2]\n");
  try {
    const env = { DAMSELFLY_T_COUNT: "3", DAMSELFLY_T_WAIT: "6s" };
    // YAML over default.
    let cfg = loadCommandConfig(parse(["--config", y.file]), schema, "T", { env: {} });
    assert.equal(cfg.name, "from-yaml");
    assert.equal(cfg.count, 2);
    assert.deepEqual(cfg.item, ["y1", "y2"]);
    assert.equal(cfg.size, 1024, "untouched keys keep their default");
    // env over YAML.
    cfg = loadCommandConfig(parse(["--config", y.file]), schema, "T", { env });
    assert.equal(cfg.name, "from-yaml");
    assert.equal(cfg.count, 3);
    assert.equal(cfg.wait, 6000);
    // flag over env and YAML.
    cfg = loadCommandConfig(parse(["--config", y.file, "--count", "4", "--item", "f"]), schema, "T", { env });
    assert.equal(cfg.count, 4);
    assert.equal(cfg.wait, 6000);
    assert.deepEqual(cfg.item, ["f"]);
  } finally {
    y.done();
  }
});

test("unknown YAML key is a DF_ERR_CONFIG error naming the key", () => {
  const y = tmpYaml("name: ok\nnope: 1\n");
  try {
    assert.throws(
      () => loadCommandConfig(parse(["--config", y.file]), schema, "T", { env: {} }),
      (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_CONFIG" && /unknown key "nope"/.test(e.message) && e.exitCode === 3,
    );
  } finally {
    y.done();
  }
});

test("bad flag values are DF_ERR_CONFIG errors naming the flag", () => {
  assert.throws(
    () => loadCommandConfig(parse(["--count", "many"]), schema, "T", { env: {} }),
    (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_CONFIG" && /--count/.test(e.message),
  );
  assert.throws(() => loadCommandConfig(parse(["--wait", "soon"]), schema, "T", { env: {} }), /--wait/);
});

test("unknown flags are usage errors from commander", () => {
  assert.throws(
    () => parse(["--bogus"]),
    (e: unknown) => (e as { code?: string }).code === "commander.unknownOption",
  );
});

test("every real schema turns into options without clashes", () => {
  for (const s of [schedulerSchema, daemonSchema, getSchema] as Schema[]) {
    const cmd = new Command("x").exitOverride();
    addSchemaOptions(cmd, s, { keepCommas: ["header"] });
    if (s !== getSchema) addConfigFileOption(cmd);
    const longs = cmd.options.map((o) => o.long);
    assert.equal(new Set(longs).size, longs.length);
  }
  const get = new Command("get").exitOverride();
  addSchemaOptions(get, getSchema, { keepCommas: ["header"] });
  get.parse(["-O", "/tmp/x", "-H", "A: 1", "-H", "B: 2, 3", "--timeout", "2s", "--no-progress", "--disable-back-to-source", "--piece-length", "4MiB"], {
    from: "user",
  });
  assert.deepEqual(collectFlags(get, getSchema), {
    output: "/tmp/x",
    header: ["A: 1", "B: 2, 3"],
    timeout: "2s",
    progress: false,
    disableBackToSource: true,
    pieceLength: "4MiB",
  });
});

test("parseHeaders", () => {
  assert.deepEqual(parseHeaders(["Authorization: Bearer x:y", "accept: a", "Accept: b"]), { Authorization: "Bearer x:y", accept: "a, b" });
  assert.throws(
    () => parseHeaders(["no colon"]),
    (e: unknown) => e instanceof DamselflyError && e.exitCode === 2,
  );
  assert.throws(() => parseHeaders([": empty name"]), /expected "Name: value"/);
  assert.throws(() => parseHeaders(["Bad Name: v"]), /expected "Name: value"/);
});

test("formatBytes and formatDuration", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1024), "1.0 KiB");
  assert.equal(formatBytes(64 * 1024 * 1024), "64.0 MiB");
  assert.equal(formatBytes(1024n ** 3n * 3n), "3.0 GiB");
  assert.equal(formatBytes(1024 * 1024 - 1), "1.0 MiB");
  assert.equal(formatDuration(2000), "2s");
  assert.equal(formatDuration(1500), "1500ms");
  assert.equal(formatDuration(300_000), "5m");
});
