// Minimal text edits of a containerd config file: one `key = value` line set
// in one table, every other byte (comments, order, formatting) kept. Table
// headers are recognised by parsing each candidate line with the TOML parser
// itself; the result is checked by parsing the whole new text: it must equal
// the old document with exactly that key changed, or nothing is edited.
import { isDeepStrictEqual } from "node:util";
import { parse } from "smol-toml";
import { DamselflyError } from "../../common/errors.js";
import type { Table } from "./containerd-config.js";
import { tomlString } from "./toml.js";

export type TomlValue = string | boolean;

export interface KeyEdit {
  table: string[];
  key: string;
  value: TomlValue;
}

const BARE = /^[A-Za-z0-9_-]+$/;

export function tomlKey(k: string): string {
  return BARE.test(k) ? k : tomlString(k);
}

export function tableHeader(path: readonly string[]): string {
  return `[${path.map(tomlKey).join(".")}]`;
}

function tomlValue(v: TomlValue): string {
  return typeof v === "string" ? tomlString(v) : String(v);
}

// The table path a `[a."b.c".d]` line opens, or undefined for any other line
// (an array-of-tables header, a key, a comment, text in a multi-line string
// that happens to look like a header is caught by the final check).
function headerPath(line: string): string[] | undefined {
  const t = line.trim();
  if (!t.startsWith("[") || t.startsWith("[[")) return undefined;
  let doc: unknown;
  try {
    doc = parse(`${t}\n`);
  } catch {
    return undefined;
  }
  const path: string[] = [];
  for (let i = 0; i < 64; i++) {
    const keys = Object.keys(doc as Table);
    if (keys.length !== 1) return keys.length === 0 ? path : undefined;
    path.push(keys[0]);
    doc = (doc as Table)[keys[0]];
  }
  return undefined;
}

function keyLine(line: string, key: string): boolean {
  const m = /^\s*("([^"\\]*)"|'([^']*)'|[A-Za-z0-9_-]+)\s*=/.exec(line);
  if (!m) return false;
  return (m[2] ?? m[3] ?? m[1]) === key;
}

function rawEdit(text: string, e: KeyEdit): string {
  const lines = text.split(/(?<=\n)/);
  const want = JSON.stringify(e.table);
  const start = lines.findIndex((l) => JSON.stringify(headerPath(l)) === want);
  const assignment = `${tomlKey(e.key)} = ${tomlValue(e.value)}`;
  if (start < 0) {
    // A new table at the end: TOML allows a sub-table after its parent's.
    const sep = text === "" || text.endsWith("\n\n") ? "" : text.endsWith("\n") ? "\n" : "\n\n";
    return `${text}${sep}${tableHeader(e.table)}\n  ${assignment}\n`;
  }
  let end = start + 1;
  while (end < lines.length && headerPath(lines[end]) === undefined && !lines[end].trim().startsWith("[[")) end++;
  const existing = lines.findIndex((l, i) => i > start && i < end && keyLine(l, e.key));
  const indentOf = (l: string) => /^\s*/.exec(l)?.[0] ?? "";
  if (existing >= 0) {
    const eol = lines[existing].endsWith("\n") ? "\n" : "";
    lines[existing] = `${indentOf(lines[existing])}${assignment}${eol}`;
  } else {
    const next = lines.slice(start + 1, end).find((l) => /^\s*[^\s#[]/.test(l));
    const indent = next !== undefined ? indentOf(next) : `${indentOf(lines[start])}  `;
    if (!lines[start].endsWith("\n")) lines[start] += "\n";
    lines.splice(start + 1, 0, `${indent}${assignment}\n`);
  }
  return lines.join("");
}

// Applies the edits in order; throws DF_ERR_CONFIG (file untouched) when the
// file's shape (inline tables, dotted keys) defeats a one-line edit.
export function editConfig(file: string, text: string, edits: readonly KeyEdit[]): string {
  const expected = parse(text) as Table;
  let out = text;
  for (const e of edits) {
    out = rawEdit(out, e);
    let t: Table = expected;
    for (const k of e.table) {
      if (typeof t[k] !== "object" || t[k] === null) t[k] = {};
      t = t[k] as Table;
    }
    t[e.key] = e.value;
  }
  let got: Table | undefined;
  try {
    got = parse(out) as Table;
  } catch {
    got = undefined;
  }
  // Through JSON: plain objects (the parser's have no prototype), dates as text.
  const plain = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
  if (!got || !isDeepStrictEqual(plain(got), plain(expected))) {
    const what = edits.map((e) => `${tableHeader(e.table)} ${e.key} = ${tomlValue(e.value)}`).join(", ");
    throw new DamselflyError("DF_ERR_CONFIG", `${file}: cannot add ${what} with a one-line edit (inline table or dotted keys?); set it by hand`);
  }
  return out;
}
