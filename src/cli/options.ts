// Turns a typed config schema (src/common/schemas.ts) into commander options,
// and the options the user actually passed back into a config through
// loadConfig, so that every setting has one name across YAML, env and flags:
//
//   default  <  YAML file (--config)  <  DAMSELFLY_<PREFIX>_<KEY> env  <  flag
//
// No commander defaults are set: an option's value is defined only when it was
// given on the command line, which is what lets env and YAML values survive.
import { Option, type Command } from "commander";
import { envName, flagName, loadConfig, type ConfigOf, type Field, type Schema } from "../common/config.js";
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

// Adds one option per schema key to cmd.
export function addSchemaOptions(cmd: Command, schema: Schema, settings: SchemaOptionsSettings = {}): Command {
  const keep = new Set(settings.keepCommas ?? []);
  const exclude = new Set(settings.exclude ?? []);
  for (const [key, f] of Object.entries(schema)) {
    if (exclude.has(key)) continue;
    const long = flagName(key);
    const short = f.short ? `${f.short}, ` : "";
    if (f.type === "bool") {
      if (f.default === true) {
        // Both forms, so a YAML/env "false" can be flipped back on the
        // command line; no implied default because both are declared.
        cmd.addOption(new Option(`${short}${long}`, `${f.description} (default: on)`));
        cmd.addOption(new Option(`--no-${long.slice(2)}`, `turn off ${long}`));
      } else {
        cmd.addOption(new Option(`${short}${long}`, f.description));
      }
      continue;
    }
    const placeholder = settings.placeholders?.[key] ?? PLACEHOLDER[f.type];
    const opt = new Option(`${short}${long} <${placeholder}>`, describe(f));
    if (f.type === "list") {
      const split = !keep.has(key);
      opt.argParser((value: string, prev: string[] | undefined) => {
        const items = split ? value.split(",").map((s) => s.trim()).filter((s) => s !== "") : [value];
        return [...(prev ?? []), ...items];
      });
    }
    cmd.addOption(opt);
  }
  return cmd;
}

// The schema keys the user passed on the command line, with their raw values
// (strings for most types: loadConfig parses and validates them, so a bad
// value is reported as "flag --x: x: ..." like a bad YAML or env value).
export function collectFlags(cmd: Command, schema: Schema): Record<string, unknown> {
  const values = cmd.opts<Record<string, unknown>>();
  const flags: Record<string, unknown> = {};
  for (const key of Object.keys(schema)) {
    const source = cmd.getOptionValueSource(key);
    const v = values[key];
    if (v !== undefined && (source === undefined || source === "cli")) flags[key] = v;
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
}

// loadConfig with the command's flags, its --config file and process.env.
export function loadCommandConfig<S extends Schema>(cmd: Command, schema: S, envPrefix: string, options: LoadCommandConfigOptions = {}): ConfigOf<S> {
  const file = options.file ?? (cmd.opts<{ config?: string }>().config || undefined);
  return loadConfig(schema, {
    ...(file !== undefined ? { file } : {}),
    env: options.env ?? process.env,
    envPrefix,
    flags: collectFlags(cmd, schema),
  });
}

// Help footer naming the env vars and the precedence.
export function envHelp(schema: Schema, envPrefix: string, withFile: boolean): string {
  const first = Object.keys(schema)[0] ?? "key";
  const sources = withFile ? "its default < the --config YAML file < env < flag" : "its default < env < flag";
  return (
    `\nEvery option can also be set as an environment variable, e.g. ${envName(envPrefix, first)}` +
    ` for ${flagName(first)}.\nPrecedence: ${sources}.`
  );
}
