import { DamselflyError } from "../../common/errors.js";
import type { LocalTask } from "../storage/local-task.js";

// Resolves once `ready()` holds, re-checking whenever the task stores a piece
// learns its size or completes; rejects if the task fails or the caller gives up.
export function waitUntil(task: LocalTask, ready: () => boolean, signal: AbortSignal): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      task.off("piece", onChange);
      task.off("info", onChange);
      task.off("done", onChange);
      task.off("failed", onFailed);
      signal.removeEventListener("abort", onAbort);
    };
    const onChange = () => {
      if (ready()) {
        cleanup();
        resolve();
      }
    };
    const onFailed = (e: DamselflyError) => {
      cleanup();
      reject(e);
    };
    const onAbort = () => {
      cleanup();
      reject(DamselflyError.from(signal.reason));
    };
    if (signal.aborted) return onAbort();
    if (task.failure) return onFailed(task.failure);
    task.on("piece", onChange);
    task.on("info", onChange);
    task.on("done", onChange);
    task.on("failed", onFailed);
    signal.addEventListener("abort", onAbort);
  });
}

// Also tells the download that a reader is blocked on n, so it comes first.
export async function waitForPiece(task: LocalTask, n: number, signal: AbortSignal): Promise<void> {
  if (task.pieces.has(n)) return;
  const release = task.want(n);
  try {
    await waitUntil(task, () => task.pieces.has(n), signal);
  } finally {
    release();
  }
}

export function waitForInfo(task: LocalTask, signal: AbortSignal): Promise<void> {
  return waitUntil(task, () => task.infoKnown, signal);
}

// Yields a task's bytes in order from `start` (inclusive) to `end`
// (exclusive; undefined: to the end), waiting for pieces still downloading.
// Every piece is CRC-checked as it is read (unless this process verified it
// moments ago); a corrupt one is dropped and refetched through `restart`.
export async function* readTaskRange(
  task: LocalTask,
  signal: AbortSignal,
  restart: () => Promise<void>,
  start = 0,
  end?: number,
  // Piece buffers come from here; the consumer releases each chunk once its
  // write completed.
  pool?: { get(): Buffer },
): AsyncGenerator<Buffer> {
  await waitForInfo(task, signal);
  const stop = Math.min(end ?? task.meta.contentLength, task.meta.contentLength);
  const pl = task.meta.pieceLength;
  for (let pos = start; pos < stop; ) {
    const n = Math.floor(pos / pl);
    let piece: Buffer;
    for (;;) {
      await waitForPiece(task, n, signal);
      try {
        piece = await task.readVerifiedPiece(n, pool?.get());
        break;
      } catch (err) {
        if ((err as DamselflyError).code !== "DF_ERR_PIECE_CORRUPT") throw err;
        await restart();
      }
    }
    const from = pos - n * pl;
    const to = Math.min(piece.length, stop - n * pl);
    yield piece.subarray(from, to);
    pos += to - from;
  }
}
