import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { DamselflyError } from "./errors.js";
import { parseHostPort } from "./address.js";

// One typed schema per binary. Each key is settable, in increasing precedence,
// by its default, the YAML file (--config), DAMSELFLY_<KEY> env vars and flags.
// Unknown keys are errors; the result is validated and frozen.

export type FieldType = "string" | "int" | "bool" | "address" | "bytes" | "duration" | "list";

export interface Field<T> {
  type: FieldType;
  default: T;
  description: string;
  // Extra check beyond the type; return an error message or undefined.
  check?(v: T): string | undefined;
  // Short flag, e.g. "-O".
  short?: string;
}

export type Schema = Record<string, Field<unknown>>;
type Widen<T> = T extends number ? number : T extends boolean ? boolean : T extends string ? string : T;
export type ConfigOf<S extends Schema> = { readonly [K in keyof S]: Widen<S[K]["default"]> };

export function field<T>(type: FieldType, def: T, description: string, extra: Partial<Field<T>> = {}): Field<T> {
  return { type, default: def, description, ...extra };
}

export function flagName(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

export function envName(prefix: string, key: string): string {
  return `DAMSELFLY_${prefix}_${key.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase()}`;
}

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4 };

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

// The YAML parser takes ~40 ms to load, paid by every process start (each
// `get`, 32 at once in a rollout) though only --config needs it.
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)("yaml") as typeof import("yaml");
  return yaml.parse(text);
}

export interface LoadSources {
  // Path to a YAML file, if any.
  file?: string;
  env?: NodeJS.ProcessEnv;
  envPrefix: string;
  // Values given on the command line (only keys the user actually passed).
  flags?: Record<string, unknown>;
}

export function loadConfig<S extends Schema>(schema: S, sources: LoadSources): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(schema)) out[k] = f.default;

  const apply = (origin: string, key: string, raw: unknown): void => {
    const f = schema[key];
    if (!f) throw new DamselflyError("DF_ERR_CONFIG", `${origin}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(schema).join(", ")})`);
    try {
      out[key] = coerce(f, raw);
    } catch (e) {
      throw new DamselflyError("DF_ERR_CONFIG", `${origin}: ${key}: ${(e as Error).message}`);
    }
  };

  if (sources.file) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(sources.file, "utf8"));
    } catch (e) {
      throw new DamselflyError("DF_ERR_CONFIG", `config file ${sources.file}: ${(e as Error).message}`);
    }
    if (doc != null) {
      if (typeof doc !== "object" || Array.isArray(doc)) throw new DamselflyError("DF_ERR_CONFIG", `config file ${sources.file}: expected a mapping of keys`);
      for (const [k, v] of Object.entries(doc as Record<string, unknown>)) apply(`config file ${sources.file}`, k, v);
    }
  }
  const env = sources.env ?? {};
  for (const k of Object.keys(schema)) {
    const v = env[envName(sources.envPrefix, k)];
    if (v !== undefined) apply(`env ${envName(sources.envPrefix, k)}`, k, v);
  }
  for (const [k, v] of Object.entries(sources.flags ?? {})) apply(`flag ${flagName(k)}`, k, v);

  for (const [k, f] of Object.entries(schema)) {
    const msg = f.check?.(out[k]);
    if (msg) throw new DamselflyError("DF_ERR_CONFIG", `${k}: ${msg}`);
  }
  return Object.freeze(out) as ConfigOf<S>;
}
