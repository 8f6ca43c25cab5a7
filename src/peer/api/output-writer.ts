import { access, constants, copyFile, link, open, rename, unlink } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, isAbsolute, join } from "node:path";
import { DamselflyError } from "../../common/errors.js";
import { Digester, formatDigest, type Digest } from "../../common/digest.js";
import type { LocalTask } from "../storage/local-task.js";
import { waitUntil } from "./task-reader.js";

const HASH_CHUNK = 4 * 1024 * 1024;

export interface OutputResult {
  digest: string;
}

// Delivers a finished task at `outputPath`: the task's data file is hard
// linked (or, across filesystems, copied) to a temporary name beside the
// output, checked against the expected digest, and renamed into place. On any
// failure the temporary file is removed, so a good file is never replaced by
// a partial or corrupt one. A linked store file is never written again: the
// store unshares it first (LocalTask.prepareForWrites).
export async function writeOutput(
  task: LocalTask,
  outputPath: string,
  expected: Digest | undefined,
  signal: AbortSignal,
  restart: () => Promise<void>,
): Promise<OutputResult> {
  if (!isAbsolute(outputPath)) throw new DamselflyError("DF_ERR_OUTPUT", `output path must be absolute: ${JSON.stringify(outputPath)}`);
  await access(dirname(outputPath), constants.W_OK).catch((err) => {
    throw new DamselflyError("DF_ERR_OUTPUT", `cannot write to ${dirname(outputPath)}: ${(err as Error).message}`, { cause: err });
  });
  await waitUntil(task, () => task.done, signal);
  // Data this process did not verify itself (stored by an earlier run) is
  // checked once before it is handed out; a piece that rotted is dropped and
  // fetched again.
  while (!task.verified) {
    if (await verifyStored(task)) task.verified = true;
    else {
      await restart();
      await waitUntil(task, () => task.done, signal);
    }
  }
  const tmp = join(dirname(outputPath), `.${basename(outputPath)}.damselfly-${randomBytes(4).toString("hex")}.tmp`);
  try {
    await link(task.dataPath, tmp).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== "EXDEV" && err.code !== "EPERM" && err.code !== "EMLINK") throw err;
      await copyFile(task.dataPath, tmp, constants.COPYFILE_FICLONE);
    });
    let digest = "";
    if (expected) {
      const actual = await hashFile(tmp, task.meta.contentLength, expected.algorithm);
      digest = formatDigest(actual);
      if (actual.hex !== expected.hex) {
        throw new DamselflyError("DF_ERR_DIGEST_MISMATCH", `digest mismatch: expected ${formatDigest(expected)}, got ${digest}`);
      }
    }
    await rename(tmp, outputPath);
    return { digest };
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    const e = DamselflyError.from(err);
    throw e.code === "DF_ERR_INTERNAL" ? new DamselflyError("DF_ERR_OUTPUT", `cannot write ${outputPath}: ${e.message}`, { cause: err }) : e;
  }
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

async function hashFile(path: string, length: number, algorithm: Digest["algorithm"]): Promise<Digest> {
  const d = new Digester(algorithm);
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    for (let pos = 0; pos < length; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(HASH_CHUNK, length - pos), pos);
      if (bytesRead === 0) throw new DamselflyError("DF_ERR_STORAGE_IO", "output file shorter than expected");
      d.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return d.digest();
  } finally {
    await fh.close();
  }
}
