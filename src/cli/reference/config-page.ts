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
  return typeof v === "object" && v !== null && !Array.isArray(v) && !isField(v) && Object.values(v).length > 0 && Object.values(v).every((x) => isField(x) || isGroup(x));
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
  for (const [unit, size] of [["TiB", 1024 ** 4], ["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
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

function flagFor(options: Map<string, Option>, key: Key): string {
  const camel = key.path.map((p, i) => (i === 0 ? p : p[0]!.toUpperCase() + p.slice(1))).join("");
  for (const long of new Set([flagName(camel), flagName(key.path.at(-1)!)])) {
    const o = options.get(long);
    if (!o || o.hidden) continue;
    const neg = key.field.type === "bool" && key.field.default === true && options.has(`--no-${long.slice(2)}`) ? ` / --no-${long.slice(2)}` : "";
    return code((o.short ? `${o.short}, ` : "") + long + neg);
  }
  return "";
}

export function configPage(program: Command): string {
  const found = Object.entries(schemas as Record<string, unknown>).filter(([name, v]) => name.endsWith("Schema") && isGroup(v)) as [string, Record<string, unknown>][];
  const parts = [
    generatedHeader("Configuration", ["src/common/schemas.ts", "src/common/config.ts", "src/cli/main.ts"]),
    "Each command has one typed schema with its defaults. Sources, lowest to highest precedence: the default <",
    "the YAML file (`--config FILE`, keys as below) < the environment variable < the flag. Unknown keys are errors;",
    "`damselfly config print <component>` prints the effective configuration. Types: `duration` is `500ms`, `30s`,",
    "`5m`, `6h` or a number of milliseconds; `bytes` is `4MiB`, `100M`, `1GB` or a number; `list` is a YAML list,",
    "or comma-separated in env and flags. A key without a flag is set in YAML or the environment only.",
    DATA_DIR_NOTE,
    "",
  ];
  for (const [name, schema] of found) {
    const command = name.slice(0, -"Schema".length);
    const prefix = command.toUpperCase();
    const options = optionsOf(program.commands.find((c) => c.name() === command));
    const rows = keysOf(schema).map((k) => {
      const camel = k.path.map((p, i) => (i === 0 ? p : p[0]!.toUpperCase() + p.slice(1))).join("");
      return [code(k.path.join(".")), k.field.type, code(formatValue(k.field)), code(envName(prefix, camel)), flagFor(options, k), k.field.description];
    });
    parts.push(`## ${command}`, "", `\`${name}\`; \`damselfly ${command} --help\`.`, "", table(["key", "type", "default", "env", "flag", "description"], rows), "");
  }
  return parts.join("\n");
}
