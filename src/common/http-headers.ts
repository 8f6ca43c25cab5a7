import { DamselflyError } from "./errors.js";
// RFC 9110 token characters: what a header name may contain.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// A value must not smuggle a second header or request.
const BAD_VALUE = /[\r\n\0]/;

export function isHeaderName(name: string): boolean {
  return HEADER_NAME.test(name);
}

export function isHeaderValue(value: string): boolean {
  return !BAD_VALUE.test(value);
}

// "Name: value" lines into a map; repeated names are joined with ", " as HTTP
// allows, matched case-insensitively.
export function parseHeaders(lines: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const byLower = new Map<string, string>();
  for (const line of lines) {
    const i = line.indexOf(":");
    const name = i < 0 ? "" : line.slice(0, i).trim();
    if (i < 0 || !isHeaderName(name) || !isHeaderValue(line)) {
      throw new DamselflyError("DF_ERR_USAGE", `invalid header ${JSON.stringify(line)}: expected "Name: value"`);
    }
    const value = line.slice(i + 1).trim();
    const existing = byLower.get(name.toLowerCase());
    if (existing !== undefined) out[existing] = out[existing] === "" ? value : `${out[existing]}, ${value}`;
    else {
      byLower.set(name.toLowerCase(), name);
      out[name] = value;
    }
  }
  return out;
}
