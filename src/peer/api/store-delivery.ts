import type { DamselflyError } from "../../common/errors.js";
import type { LocalTask } from "../storage/local-task.js";
import { waitUntil } from "./task-reader.js";
import { recheckIfChanged, stampChecked } from "../storage/data-stamp.js";

// Waits until a task is complete and every stored piece is known good, then
// returns its data file for the client to copy. Data this process did not
// verify itself (stored by an earlier run), or that changed on disk since it
// was checked, is checked first; a piece that rotted or was edited is
// dropped and fetched again through `restart`.
export async function verifiedStorePath(task: LocalTask, signal: AbortSignal, restart: () => Promise<void>): Promise<string> {
  await waitUntil(task, () => task.done, signal);
  await recheckIfChanged(task);
  while (!task.verified) {
    if (await verifyStored(task)) {
      task.verified = true;
      await stampChecked(task);
    } else {
      await restart();
      await waitUntil(task, () => task.done, signal);
    }
  }
  return task.dataPath;
}

async function verifyStored(task: LocalTask): Promise<boolean> {
  for (const n of [...task.pieces.keys()]) {
    try {
      await task.readVerifiedPiece(n);
    } catch (err) {
      if ((err as DamselflyError).code !== "DF_ERR_PIECE_CORRUPT") throw err;
      return false;
    }
  }
  return true;
}
