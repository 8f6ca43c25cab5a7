import { DamselflyError } from "../../common/errors.js";
import type { HttpSource } from "../source/http-source.js";

// Bytes [from, to) of an object straight from its origin, in order, as
// buffers; an origin that ignores the Range header has its body's head
// skipped. Throws when the body ends short.
export async function* originRange(
  source: HttpSource,
  obj: { url: string; headers: Record<string, string> },
  from: number,
  to: number,
  signal: AbortSignal,
): AsyncGenerator<Buffer> {
  if (from >= to) return;
  const r = await source.fetch(obj.url, obj.headers, { start: from, end: to - 1 }, signal);
  let skip = r.ranged ? 0 : from;
  let at = from;
  try {
    for await (const chunk of r.body) {
      let b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      if (skip > 0) {
        const n = Math.min(skip, b.length);
        skip -= n;
        b = b.subarray(n);
      }
      if (b.length > to - at) b = b.subarray(0, to - at);
      if (b.length === 0) continue;
      at += b.length;
      yield b;
      if (at >= to) break;
    }
  } finally {
    r.body.destroy();
  }
  if (at < to) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `origin body ended at byte ${at} of ${to}`);
}
