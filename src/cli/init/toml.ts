// The little TOML `damselfly init` writes by hand (no TOML library): basic
// strings, and reading back the basic or literal string value of a key line.

// A TOML basic string: backslash, quote and control characters escaped, so a
// value can never end the string early or break the line.
export function tomlString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return out + '"';
}

export function tomlStringArray(items: readonly string[]): string {
  return `[${items.map(tomlString).join(", ")}]`;
}

// The string value of a `key = "..."` or `key = '...'` line, or undefined when
// the line does not assign a single-line string to key.
export function readStringAssignment(line: string, key: string): string | undefined {
  const m = /^\s*("?)([A-Za-z0-9_-]+)\1\s*=\s*(.*)$/.exec(line);
  if (!m || m[2] !== key) return undefined;
  const rest = m[3];
  if (rest.startsWith("'")) {
    const end = rest.indexOf("'", 1);
    return end > 0 ? rest.slice(1, end) : undefined;
  }
  if (!rest.startsWith('"')) return undefined;
  // A basic string's escapes are a subset of JSON's apart from \UXXXXXXXX and
  // \e, which never occur in a registry name.
  const s = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
  if (!s) return undefined;
  try {
    return JSON.parse(`"${s[1]}"`) as string;
  } catch {
    return s[1];
  }
}
