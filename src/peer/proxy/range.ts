// One byte range from a Range header. Multi-range requests are rare for blobs
// and are answered by the upstream itself.
export type ByteRangeSpec =
  | { kind: "from"; start: number; end?: number } // bytes=a-b (end inclusive) or bytes=a-
  | { kind: "suffix"; length: number }; // bytes=-n

export type RangeParse = { ok: true; spec: ByteRangeSpec | undefined } | { ok: false };

// undefined spec: no Range header (the whole object). ok=false: a Range this
// server does not answer from P2P (several ranges, other units, malformed).
export function parseRange(header: string | undefined): RangeParse {
  if (header === undefined) return { ok: true, spec: undefined };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return { ok: false };
  if (m[1] === "") return { ok: true, spec: { kind: "suffix", length: Number(m[2]) } };
  const start = Number(m[1]);
  if (m[2] === "") return { ok: true, spec: { kind: "from", start } };
  const end = Number(m[2]);
  if (end < start) return { ok: false };
  return { ok: true, spec: { kind: "from", start, end } };
}

// [start, end) within an object of `size` bytes, or undefined when the range
// cannot be satisfied (416).
export function resolveRange(spec: ByteRangeSpec, size: number): { start: number; end: number } | undefined {
  if (spec.kind === "suffix") {
    if (spec.length === 0 || size === 0) return undefined;
    return { start: Math.max(0, size - spec.length), end: size };
  }
  if (spec.start >= size) return undefined;
  return { start: spec.start, end: Math.min(size, (spec.end ?? size - 1) + 1) };
}
