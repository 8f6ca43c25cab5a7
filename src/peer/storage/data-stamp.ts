import { stat } from "node:fs/promises";
import type { LocalTask } from "./local-task.js";

// A data file's identity and last change: inode, size and change time. Any
// write to the file, through any path or link, moves its ctime, which no one
// can set back (utimes sets it to now), so an unchanged stamp means the
// bytes are the ones that were checked when it was taken.
export async function dataStamp(path: string): Promise<string | undefined> {
  const st = await stat(path, { bigint: true }).catch(() => undefined);
  return st ? `${st.ino}:${st.size}:${st.ctimeNs}` : undefined;
}

// Before the store vouches for a finished task's data file again (names it
// to a client, with the digest it hashed to while downloading): when the file
// changed since it was checked, what was checked no longer holds. Every piece
// is then checked again (LocalTask.verified) and the content digest is no
// longer claimed, so the client hashes what it gets.
export async function recheckIfChanged(task: LocalTask): Promise<void> {
  if (!task.done || (await dataStamp(task.dataPath)) === task.meta.dataStamp) return;
  task.verified = false;
  const { contentDigest: _unsure, ...meta } = task.meta;
  task.meta = { ...meta, dataStamp: undefined };
  await task.saveMeta();
}

// Every piece was checked again: the file as it is now is what is vouched for.
export async function stampChecked(task: LocalTask): Promise<void> {
  task.meta = { ...task.meta, dataStamp: await dataStamp(task.dataPath) };
  await task.saveMeta();
}
