import type { Writable } from "node:stream";
import { DamselflyError } from "./errors.js";

// Resolves when a writable drains or closes, whichever comes first, and
// removes both listeners (racing two once() promises leaks the loser's).
export function drainOrClose(w: Writable): Promise<void> {
  if (w.destroyed || w.writableEnded) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      w.off("drain", done);
      w.off("close", done);
      resolve();
    };
    w.on("drain", done);
    w.on("close", done);
  });
}

// A response body as text, at most `max` bytes (a listing page, never a
// file): past it the body is dropped and the answer refused, so a store or
// hub cannot make this process hold an unbounded page.
export async function readTextCapped(body: AsyncIterable<Uint8Array>, max: number, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    // Leaving the loop closes the body.
    if (size > max) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `${what} is larger than ${max} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString("utf8");
}
