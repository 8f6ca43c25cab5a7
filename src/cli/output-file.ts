// Puts a download at its output path with the user's own permissions: the
// bytes go to a temporary name beside the output, are checked against the
// expected digest, and only then renamed into place. On any failure (or
// Ctrl-C) the temporary file is removed, so a good file is never replaced by
// a partial or corrupt one.
import { randomBytes } from "node:crypto";
import { constants, copyFile, link, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DamselflyError } from "../common/errors.js";
import { digestMismatch, hashFile, type Digest } from "../common/digest.js";

export async function placeOutput(outputPath: string, expected: Digest | undefined, fill: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = join(dirname(outputPath), `.${basename(outputPath)}.damselfly-${randomBytes(4).toString("hex")}.tmp`);
  try {
    await fill(tmp);
    if (expected) {
      const actual = await hashFile(tmp, expected.algorithm);
      if (actual.hex !== expected.hex) throw digestMismatch(expected, actual);
    }
    await rename(tmp, outputPath);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    const e = DamselflyError.from(err);
    throw e.code === "DF_ERR_INTERNAL" ? new DamselflyError("DF_ERR_OUTPUT", `cannot write ${outputPath}: ${e.message}`, { cause: err }) : e;
  }
}

// Codes meaning "this process cannot use the daemon's store file": another
// user's file, another filesystem or host, or no such path here.
const UNREACHABLE_STORE = new Set(["EXDEV", "EPERM", "EACCES", "ENOENT", "EMLINK"]);

// Links the daemon's verified store file to `tmp` (instant, same
// filesystem), else copies it (reflink where the filesystem can). Returns
// false when the store is out of this process's reach.
export async function linkOrCopy(storePath: string, tmp: string): Promise<boolean> {
  try {
    await link(storePath, tmp);
    return true;
  } catch (err) {
    if (!UNREACHABLE_STORE.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
  }
  try {
    await copyFile(storePath, tmp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
    return true;
  } catch (err) {
    if (!UNREACHABLE_STORE.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
    await unlink(tmp).catch(() => undefined);
    return false;
  }
}
