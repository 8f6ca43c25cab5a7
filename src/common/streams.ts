import type { Writable } from "node:stream";

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
