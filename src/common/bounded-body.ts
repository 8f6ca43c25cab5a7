// Reads an origin's answer that must fit in memory (a listing page, an API
// document) up to a bound: a store or hub that sends more is broken or
// hostile, and gets a clear error instead of the process's memory.
import { DamselflyError } from "./errors.js";

export async function readBoundedText(body: AsyncIterable<Buffer | Uint8Array> & { destroy?(): unknown }, max: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += c.length;
    if (size > max) {
      body.destroy?.();
      throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `${what}: answer larger than ${max} bytes`);
    }
    chunks.push(Buffer.from(c.buffer, c.byteOffset, c.length));
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function readBoundedJson(body: AsyncIterable<Buffer | Uint8Array> & { destroy?(): unknown }, max: number, what: string): Promise<unknown> {
  const text = await readBoundedText(body, max, what);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `${what}: not JSON`);
  }
}
