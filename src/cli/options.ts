// Turns a typed config schema (src/common/schemas.ts) into commander options,
// and the options the user actually passed back into a config through
// loadConfig, so that every setting has one name across YAML, env and flags:
//
//   default  <  YAML file (--config)  <  DAMSELFLY_<PREFIX>_<KEY> env  <  flag
//
// No commander defaults are set: an option's value is defined only when it was
// given on the command line, which is what lets env and YAML values survive.
import { Option, type Command } from "commander";
import { envName, fieldsOf, flagName, loadConfig, visibleFlag, type ConfigOf, type Field, type Schema } from "../common/config.js";
import { formatDuration } from "./format.js";

export interface SchemaOptionsSettings {
  // List keys whose values may themselves contain commas (e.g. HTTP headers):
  // each occurrence of the flag is one item. Other list flags also accept
  // comma-separated items ("--scheduler a:1,b:2").
  keepCommas?: readonly string[];
  // Keys not to expose as flags.
  exclude?: readonly string[];
  // Per-key overrides of the value placeholder shown in help.
  placeholders?: Readonly<Record<string, string>>;
}

const PLACEHOLDER: Record<Field<unknown>["type"], string> = {
  string: "value",
  int: "n",
  bool: "",
  address: "host:port",
  bytes: "size",
  duration: "duration",
  list: "value",
};

export function formatDefault(f: Field<unknown>): string | undefined {
  const d = f.default;
  switch (f.type) {
    case "bool":
      return undefined;
    case "duration":
      return formatDuration(d as number);
    case "list":
      return (d as string[]).length ? (d as string[]).join(",") : undefined;
    case "string":
      return d === "" ? undefined : JSON.stringify(d);
    default:
      return String(d);
  }
}

function describe(f: Field<unknown>): string {
  const def = formatDefault(f);
  return def === undefined || /\bdefault\b/.test(f.description) ? f.description : `${f.description} (default: ${def})`;
}

// Adds the schema's flags to cmd: the visible ones, and the legacy flat
// names of keys that moved into a group, hidden from --help.
export function addSchemaOptions(cmd: Command, schema: Schema, settings: SchemaOptionsSettings = {}): Command {
  const keep = new Set(settings.keepCommas ?? []);
  const exclude = new Set(settings.exclude ?? []);
  for (const e of fieldsOf(schema)) {
    if (exclude.has(e.path)) continue;
    const visible = visibleFlag(e);
    if (visible !== undefined) addFlag(cmd, visible, e.field, false, !keep.has(visible), settings.placeholders?.[visible]);
    const legacy = e.field.envOnly ? undefined : e.field.legacy;
    if (legacy !== undefined && legacy !== visible) addFlag(cmd, legacy, e.field, true, !keep.has(legacy), settings.placeholders?.[legacy]);
  }
  return cmd;
}

function addFlag(cmd: Command, key: string, f: Field<unknown>, hidden: boolean, split: boolean, placeholder?: string): void {
  const long = flagName(key);
  const short = f.short ? `${f.short}, ` : "";
  const add = (o: Option) => cmd.addOption(hidden ? o.hideHelp() : o);
  if (f.type === "bool") {
    if (f.default === true) {
      // Both forms, so a YAML/env "false" can be flipped back on the
      // command line; no implied default because both are declared.
      add(new Option(`${short}${long}`, `${f.description} (default: on)`));
      add(new Option(`--no-${long.slice(2)}`, `turn off ${long}`));
    } else {
      add(new Option(`${short}${long}`, f.description));
    }
    return;
  }
  const opt = new Option(`${short}${long} <${placeholder ?? PLACEHOLDER[f.type]}>`, describe(f));
  if (f.type === "list") {
    opt.argParser((value: string, prev: string[] | undefined) => {
      const items = split
        ? value
            .split(",")
            .map((s) => s.trim())
            .filter((s) => s !== "")
        : [value];
      return [...(prev ?? []), ...items];
    });
  }
  add(opt);
}

// The flags the user passed on the command line, by flag name (camelCase;
// loadConfig maps legacy names to their key), with their raw values
// (strings for most types: loadConfig parses and validates them, so a bad
// value is reported as "flag --x: x: ..." like a bad YAML or env value).
export function collectFlags(cmd: Command, schema: Schema): Record<string, unknown> {
  const values = cmd.opts<Record<string, unknown>>();
  const flags: Record<string, unknown> = {};
  for (const e of fieldsOf(schema)) {
    for (const name of new Set([visibleFlag(e), e.field.envOnly ? undefined : e.field.legacy])) {
      if (name === undefined) continue;
      const source = cmd.getOptionValueSource(name);
      const v = values[name];
      if (v !== undefined && (source === undefined || source === "cli")) flags[name] = v;
    }
  }
  return flags;
}

export function addConfigFileOption(cmd: Command): Command {
  return cmd.option("--config <file>", "YAML config file (keys as in `damselfly config print`)");
}

export interface LoadCommandConfigOptions {
  // YAML file; defaults to the command's --config value, if it has one.
  file?: string;
  env?: NodeJS.ProcessEnv;
  // Deprecation notices, to log once a logger exists.
  warn?: (message: string) => void;
}

// loadConfig with the command's flags, its --config file and process.env.
export function loadCommandConfig<S extends Schema>(cmd: Command, schema: S, envPrefix: string, options: LoadCommandConfigOptions = {}): ConfigOf<S> {
  const file = options.file ?? (cmd.opts<{ config?: string }>().config || undefined);
  return loadConfig(schema, {
    ...(file !== undefined ? { file } : {}),
    env: options.env ?? process.env,
    envPrefix,
    flags: collectFlags(cmd, schema),
    ...(options.warn ? { warn: options.warn } : {}),
  });
}

// Help footer naming the env vars, the YAML groups and the precedence.
export function envHelp(schema: Schema, envPrefix: string, withFile: boolean): string {
  const fields = fieldsOf(schema);
  const first = fields.find((e) => visibleFlag(e) !== undefined);
  const nested = fields.find((e) => e.path.includes(".") && visibleFlag(e) === undefined && !e.field.envOnly);
  const sources = withFile ? "its default < the --config YAML file < env < flag" : "its default < env < flag";
  const flagged = first
    ? `\nEvery option can also be set as an environment variable, e.g. ${envName(envPrefix, first.path)} for ${flagName(visibleFlag(first)!)}.`
    : "";
  const groups = nested
    ? `\nThe other settings are keys of the --config YAML file (see \`damselfly config print\`), or env vars, e.g. ${nested.path} or ${envName(envPrefix, nested.path)}.`
    : "";
  return `${flagged}${groups}\nPrecedence: ${sources}.`;
}
