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
