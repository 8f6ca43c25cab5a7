import { parseBytes } from "./config.js";

// A disk GC watermark: a byte size ("20GiB") or a share of the data dir's
// filesystem size ("80%"); 0 turns it off. Either way it bounds Damselfly's
// own files, never the filesystem's total usage.
export type Watermark = { bytes: number } | { percent: number };

export function parseWatermark(raw: string): Watermark {
  const s = raw.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(s);
  if (pct) {
    const percent = Number(pct[1]);
    if (percent > 100) throw new Error(`${JSON.stringify(raw)}: a percentage must be at most 100%`);
    return { percent };
  }
  try {
    return { bytes: parseBytes(s) };
  } catch {
    throw new Error(`${JSON.stringify(raw)} is neither a byte size (e.g. 20GiB, 0 for off) nor a percentage of the filesystem (e.g. 80%)`);
  }
}

export function watermarkCheck(v: string): string | undefined {
  try {
    parseWatermark(v);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

// The byte value for a filesystem of `fsBytes`; 0 means off.
export function watermarkBytes(w: Watermark, fsBytes: number): number {
  return "bytes" in w ? w.bytes : Math.floor((fsBytes * w.percent) / 100);
}
