import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { DamselflyError } from "./errors.js";
import { parseHostPort } from "./address.js";

// One typed schema per binary, nested in groups (server, download, upload,
// ...) like Dragonfly's YAML. Each key is settable, in increasing precedence,
// by its default, the YAML file (--config), DAMSELFLY_<PREFIX>_<GROUP>_<KEY>
// env vars and flags. Only the common few keys have a flag; keys that had a
// flat name before they moved into a group keep it as a hidden flag, a
// top-level YAML key (with a deprecation warning) and an env var. Secrets are
// read from their own env var only and never printed. Unknown keys are
// errors; the result is validated and deeply frozen.

export type FieldType = "string" | "int" | "bool" | "address" | "bytes" | "duration" | "list";

export interface Field<T> {
  type: FieldType;
  default: T;
  description: string;
  // Extra check beyond the type; return an error message or undefined.
  check?(v: T): string | undefined;
  // Short flag, e.g. "-O".
  short?: string;
  // Whether it has a visible flag. A top-level key has one under its own
  // name unless this is false; a key in a group only when true, named after
  // its legacy flat key ("dataDir" is --data-dir).
  flag?: boolean;
  // The flat key this setting had before it moved into a group: a hidden
  // flag, a top-level YAML key (deprecated) and an env var.
  legacy?: string;
  // Never logged nor printed (`config print` shows "(set)").
  secret?: boolean;
  // Read from this env var only: never a flag (visible in ps) nor a YAML key.
  envOnly?: string;
}

export interface Schema {
  [key: string]: Field<unknown> | Schema;
}
type Widen<T> = T extends number ? number : T extends boolean ? boolean : T extends string ? string : T;
export type ConfigOf<S extends Schema> = {
  readonly [K in keyof S]: S[K] extends { type: FieldType; default: infer T } ? Widen<T> : S[K] extends Schema ? ConfigOf<S[K]> : never;
};

export function field<T>(type: FieldType, def: T, description: string, extra: Partial<Field<T>> = {}): Field<T> {
  return { type, default: def, description, ...extra };
}

// A secret from the environment only, e.g. DAMSELFLY_CLUSTER_TOKEN.
export function secretEnv(env: string, description: string): Field<string> {
  return field("string", "", description, { secret: true, envOnly: env, flag: false });
}

export function isField(x: Field<unknown> | Schema): x is Field<unknown> {
  return typeof x.type === "string" && "default" in x && "description" in x;
}

export function flagName(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

// envName("DAEMON", "upload.slots") is DAMSELFLY_DAEMON_UPLOAD_SLOTS.
export function envName(prefix: string, key: string): string {
  return `DAMSELFLY_${prefix}_${key
    .replace(/[A-Z]/g, (c) => "_" + c)
    .replace(/\./g, "_")
    .toUpperCase()}`;
}

export interface FieldEntry {
  // Dotted key path, e.g. "upload.slots".
  path: string;
  field: Field<unknown>;
}

// Every field of a schema, depth first, in declaration order.
export function fieldsOf(schema: Schema, prefix = ""): FieldEntry[] {
  const out: FieldEntry[] = [];
  for (const [k, node] of Object.entries(schema)) {
    const path = prefix + k;
    if (isField(node)) out.push({ path, field: node });
    else out.push(...fieldsOf(node, path + "."));
  }
  return out;
}

// The visible flag of a field (camelCase), if it has one.
export function visibleFlag(e: FieldEntry): string | undefined {
  if (e.field.flag === false || e.field.envOnly) return undefined;
  if (!e.path.includes(".")) return e.path;
  return e.field.flag ? e.field.legacy : undefined;
}

// The flag that sets a field (camelCase), visible or a hidden legacy one.
export function anyFlag(e: FieldEntry): string | undefined {
  return visibleFlag(e) ?? (e.field.envOnly ? undefined : e.field.legacy);
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

export function parseBytes(s: string | number): number {
  if (typeof s === "number") return s;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(s);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`not a byte size: ${JSON.stringify(s)} (e.g. 4MiB, 100M, 1GB)`);
  return Math.round(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

// Durations are held in milliseconds; "30s", "5m", "250ms" or a bare number of ms.
export function parseDuration(s: string | number): number {
  if (typeof s === "number") return s;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(s);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(s)} (e.g. 500ms, 30s, 5m)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? "ms"]!);
}

function coerce(f: Field<unknown>, raw: unknown): unknown {
  switch (f.type) {
    case "string":
      if (typeof raw !== "string") throw new Error("expected a string");
      return raw;
    case "address":
      if (typeof raw !== "string") throw new Error("expected HOST:PORT");
      parseHostPort(raw);
      return raw;
    case "int": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw new Error("expected an integer");
      return n;
    }
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (raw === "true" || raw === "1") return true;
      if (raw === "false" || raw === "0") return false;
      throw new Error("expected true or false");
    case "bytes":
      if (typeof raw !== "string" && typeof raw !== "number") throw new Error("expected a byte size");
      return parseBytes(raw);
    case "duration":
      if (typeof raw !== "string" && typeof raw !== "number") throw new Error("expected a duration");
      return parseDuration(raw);
    case "list":
      if (Array.isArray(raw)) return raw.map(String);
      if (typeof raw === "string") return raw === "" ? [] : raw.split(",").map((x) => x.trim());
      throw new Error("expected a list");
  }
}

// The YAML parser loads only when a --config file is given: every process
// start would pay for it (docs/decisions/cli-startup.md).
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)("yaml") as typeof import("yaml");
  return yaml.parse(text);
}

export interface LoadSources {
  // Path to a YAML file, if any.
  file?: string;
  env?: NodeJS.ProcessEnv;
  envPrefix: string;
  // Values given on the command line (only keys the user actually passed),
  // by key path ("upload.slots") or legacy flat key ("uploadSlots").
  flags?: Record<string, unknown>;
  // Deprecation notices (a flat YAML key, a legacy flag): the caller logs
  // them once its logger exists.
  warn?: (message: string) => void;
}

const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

export function loadConfig<S extends Schema>(schema: S, sources: LoadSources): ConfigOf<S> {
  const entries = fieldsOf(schema);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const byLegacy = new Map(entries.filter((e) => e.field.legacy).map((e) => [e.field.legacy!, e]));
  const values = new Map<string, unknown>(entries.map((e) => [e.path, e.field.default]));
  // Where each value that is not a default came from, for check errors.
  const origins = new Map<string, string>();
  const warn = sources.warn ?? (() => undefined);

  const apply = (origin: string, e: FieldEntry, raw: unknown): void => {
    try {
      values.set(e.path, coerce(e.field, raw));
      origins.set(e.path, origin);
    } catch (err) {
      throw new DamselflyError("DF_ERR_CONFIG", `${origin}: ${e.path}: ${(err as Error).message}`);
    }
  };
  const refuseSecret = (origin: string, e: FieldEntry): void => {
    if (e.field.envOnly) throw new DamselflyError("DF_ERR_CONFIG", `${origin}: ${e.path} is a secret: set it in the environment (${e.field.envOnly}) only`);
  };

  if (sources.file) {
    const origin = `config file ${sources.file}`;
    const doc = readYamlFile(sources.file);
    if (doc != null) {
      if (!isMapping(doc)) throw new DamselflyError("DF_ERR_CONFIG", `${origin}: expected a mapping of keys`);
      const walk = (node: Schema, obj: Record<string, unknown>, prefix: string): void => {
        for (const [k, v] of Object.entries(obj)) {
          const child = node[k];
          if (child && isField(child)) {
            const e = byPath.get(prefix + k)!;
            refuseSecret(origin, e);
            apply(origin, e, v);
          } else if (child && isMapping(v)) {
            walk(child, v, `${prefix}${k}.`);
          } else if (prefix === "" && byLegacy.has(k)) {
            const e = byLegacy.get(k)!;
            warn(`${origin}: key ${JSON.stringify(k)} is deprecated: use ${e.path}`);
            apply(origin, e, v);
          } else {
            const where = prefix === "" ? "" : ` in ${prefix.slice(0, -1)}`;
            throw new DamselflyError("DF_ERR_CONFIG", `${origin}: unknown key ${JSON.stringify(prefix + k)} (known${where}: ${Object.keys(node).join(", ")})`);
          }
        }
      };
      walk(schema, doc, "");
    }
  }
  const env = sources.env ?? {};
  for (const e of entries) {
    const names = e.field.envOnly
      ? [e.field.envOnly]
      : [...(e.field.legacy ? [envName(sources.envPrefix, e.field.legacy)] : []), envName(sources.envPrefix, e.path)];
    for (const name of names) if (env[name] !== undefined) apply(`env ${name}`, e, env[name]);
  }
  for (const [k, v] of Object.entries(sources.flags ?? {})) {
    const e = byPath.get(k) ?? byLegacy.get(k);
    if (!e) throw new DamselflyError("DF_ERR_CONFIG", `flag ${flagName(k)}: unknown key ${JSON.stringify(k)}`);
    refuseSecret(`flag ${flagName(k)}`, e);
    if (!k.includes(".") && k !== visibleFlag(e))
      warn(`flag ${flagName(k)} is deprecated: set ${e.path} in the --config file or env ${envName(sources.envPrefix, e.path)}`);
    apply(`flag ${flagName(k)}`, e, v);
  }

  for (const e of entries) {
    const msg = e.field.check?.(values.get(e.path));
    const origin = origins.get(e.path);
    if (msg) throw new DamselflyError("DF_ERR_CONFIG", `${origin ? `${origin}: ` : ""}${e.path}: ${msg}`);
  }
  return build(schema, values, "") as ConfigOf<S>;
}

function build(schema: Schema, values: Map<string, unknown>, prefix: string): Readonly<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const [k, node] of Object.entries(schema)) out[k] = isField(node) ? values.get(prefix + k) : build(node, values, `${prefix}${k}.`);
  return Object.freeze(out);
}

function readYamlFile(file: string): unknown {
  try {
    return parseYaml(readFileSync(file, "utf8"));
  } catch (e) {
    throw new DamselflyError("DF_ERR_CONFIG", `config file ${file}: ${(e as Error).message}`);
  }
}

// The value at a key path of a loaded config.
export function valueAt(config: object, path: string): unknown {
  let v: unknown = config;
  for (const k of path.split(".")) v = (v as Record<string, unknown>)[k];
  return v;
}
