// docs/reference/config.md: every key of every schema exported by
// src/common/schemas.ts, with its type, default, help, env var and flag.
// Schemas are found by shape (an object of fields, or of groups of fields),
// so a schema or a group added there shows up here without an edit.
import type { Command, Option } from "commander";
import { envName, flagName, type Field } from "../../common/config.js";
import * as schemas from "../../common/schemas.js";
import { formatDuration } from "../format.js";
import { code, generatedHeader, table } from "./markdown.js";

function isField(v: unknown): v is Field<unknown> {
  return typeof v === "object" && v !== null && "type" in v && "default" in v && typeof (v as { description?: unknown }).description === "string";
}

function isGroup(v: unknown): v is Record<string, unknown> {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    !isField(v) &&
    Object.values(v).length > 0 &&
    Object.values(v).every((x) => isField(x) || isGroup(x))
  );
}

interface Key {
  path: string[];
  field: Field<unknown>;
}

function keysOf(schema: Record<string, unknown>, prefix: string[] = []): Key[] {
  return Object.entries(schema).flatMap(([k, v]) => (isField(v) ? [{ path: [...prefix, k], field: v }] : isGroup(v) ? keysOf(v, [...prefix, k]) : []));
}

// Replaced after the machine's own paths are (generate.ts).
export const DATA_DIR_NOTE = "<!-- data dir note -->";

// 1048576 -> "1MiB", as a user would write it; sizes that are no whole
// number of a unit stay in bytes.
function exactBytes(n: number): string {
  for (const [unit, size] of [
    ["TiB", 1024 ** 4],
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const) {
    if (n > 0 && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}

export function formatValue(f: Field<unknown>): string {
  const d = f.default;
  if (f.type === "duration") return formatDuration(d as number);
  if (f.type === "list") return (d as string[]).join(",");
  if (f.type === "bytes") return exactBytes(d as number);
  return String(d);
}

// Every option of cmd and its subcommands, by long flag.
function optionsOf(cmd: Command | undefined): Map<string, Option> {
  const out = new Map<string, Option>();
  const walk = (c: Command) => {
    for (const o of c.options) if (o.long) out.set(o.long, o);
    c.commands.forEach(walk);
  };
  if (cmd) walk(cmd);
  return out;
}

// What a field may declare besides its type (nested schemas: src/common/config.ts).
interface FieldExtras {
  // Has a visible flag (a key in a group only when true).
  flag?: boolean;
  // The flat key it had before it moved into a group: hidden flag, YAML, env.
  legacy?: string;
  secret?: boolean;
  // Read from this environment variable only.
  envOnly?: string;
}

const camel = (path: readonly string[]): string => path.map((p, i) => (i === 0 ? p : p[0]!.toUpperCase() + p.slice(1))).join("");

// The visible flag that sets a key: a top-level key's own name, a grouped
// key's legacy name when it is declared a flag; confirmed in the program.
function flagFor(options: Map<string, Option>, key: Key): string {
  const f = key.field as Field<unknown> & FieldExtras;
  if (f.flag === false || f.envOnly) return "";
  const name = key.path.length === 1 ? key.path[0] : f.flag ? f.legacy : undefined;
  if (name === undefined) return "";
  const long = flagName(name);
  const o = options.get(long);
  if (!o || o.hidden) return "";
  const neg = f.type === "bool" && f.default === true && options.has(`--no-${long.slice(2)}`) ? ` / --no-${long.slice(2)}` : "";
  return code((o.short ? `${o.short}, ` : "") + long + neg);
}

function envFor(prefix: string, key: Key): string {
  const f = key.field as Field<unknown> & FieldExtras;
  return f.envOnly ?? envName(prefix, camel(key.path));
}

// Older names of a key that are still accepted: a hidden flag (one the
// program has and --help does not show), the flat YAML key and env var of a
// key that moved into a group.
function legacyOf(options: Map<string, Option>, prefix: string, key: Key): string {
  const f = key.field as Field<unknown> & FieldExtras;
  if (!f.legacy || f.envOnly) return "";
  const names: string[] = [];
  const flag = options.get(flagName(f.legacy));
  if (flag?.hidden) names.push(flagName(f.legacy));
  if (key.path.length > 1) names.push(f.legacy);
  const env = envName(prefix, f.legacy);
  if (env !== envFor(prefix, key)) names.push(env);
  return names.map(code).join(", ");
}

function describeField(f: Field<unknown> & FieldExtras): string {
  if (f.envOnly) return `${f.description} (secret: environment only, never printed)`;
  return f.secret ? `${f.description} (secret: never printed)` : f.description;
}

export function configPage(program: Command): string {
  const found = Object.entries(schemas as Record<string, unknown>).filter(([name, v]) => name.endsWith("Schema") && isGroup(v)) as [
    string,
    Record<string, unknown>,
  ][];
  const parts = [
    generatedHeader("Configuration", ["src/common/schemas.ts", "src/common/config.ts", "src/cli/main.ts"]),
    "Each command has one typed schema with its defaults. Sources, lowest to highest precedence: the default <",
    "the YAML file (`--config FILE`, keys as below) < the environment variable < the flag. Unknown keys are errors;",
    "`damselfly config print <component>` prints the effective configuration. Types: `duration` is `500ms`, `30s`,",
    "`5m`, `6h` or a number of milliseconds; `bytes` is `4MiB`, `100M`, `1GB` or a number; `list` is a YAML list,",
    "or comma-separated in env and flags. A key without a flag is set in YAML or the environment only; a dotted key",
    "is a nested mapping in YAML (`upload: {slots: 8}`).",
    DATA_DIR_NOTE,
    "",
  ];
  for (const [name, schema] of found) {
    const command = name.slice(0, -"Schema".length);
    const prefix = command.toUpperCase();
    const options = optionsOf(program.commands.find((c) => c.name() === command));
    const keys = keysOf(schema);
    const withLegacy = keys.some((k) => legacyOf(options, prefix, k) !== "");
    const headers = ["key", "type", "default", "env", "flag", ...(withLegacy ? ["deprecated names (hidden flag, YAML key, env)"] : []), "description"];
    const rows = keys.map((k) => {
      const legacy = withLegacy ? [legacyOf(options, prefix, k)] : [];
      return [
        code(k.path.join(".")),
        k.field.type,
        code(formatValue(k.field)),
        code(envFor(prefix, k)),
        flagFor(options, k),
        ...legacy,
        describeField(k.field),
      ];
    });
    parts.push(`## ${command}`, "", `\`${name}\`; \`damselfly ${command} --help\`.`, "", table(headers, rows), "");
  }
  return parts.join("\n");
}
