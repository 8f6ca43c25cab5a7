// Where `get -O PATH` puts a download, with the user's own permissions, as
// `curl -o` and `wget -O` do:
// - nothing there, or a regular file: the bytes go to a temporary name beside
//   it, are checked against the expected digest, and only then renamed into
//   place; on any failure (or Ctrl-C) the temporary file is removed, so a
//   good file is never replaced by a partial or corrupt one;
// - a character or block device or a FIFO (/dev/null, a named pipe): the
//   bytes are written into it in order (it is never replaced), and a digest
//   mismatch is reported after them, as with stdout;
// - a symbolic link: followed, its target put by these rules (the link stays);
// - a directory or a socket: an error.
import { randomBytes } from "node:crypto";
import { constants, copyFile, lstat, open, readlink, realpath, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { DamselflyError } from "../common/errors.js";
import { Digester, digestMismatch, hashFile, needsLength, type Digest } from "../common/digest.js";

export type OutputTarget =
  // A new file renamed into place at `path` (links resolved).
  | { kind: "replace"; path: string }
  // An existing device or FIFO written into; `path` as given (the kernel
  // follows its links, /dev/stdout and /proc/self/fd/N included).
  | { kind: "into"; path: string };

// The kernel's own limit on links followed in one path (MAXSYMLINKS).
const MAX_LINKS = 40;
const CHUNK = 1024 * 1024;

export async function outputTarget(path: string): Promise<OutputTarget> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw outputError(path, e);
  });
  if (!st) return { kind: "replace", path: await danglingTarget(path) };
  if (st.isFile()) return { kind: "replace", path: await realpath(path) };
  if (st.isDirectory()) throw new DamselflyError("DF_ERR_OUTPUT", `output ${path} is a directory`);
  if (st.isSocket()) throw new DamselflyError("DF_ERR_OUTPUT", `output ${path} is a socket, which cannot be written as a file`);
  return { kind: "into", path };
}

// Nothing at `path`: the file to create, which a dangling symbolic link
// names (the link is left as it is).
async function danglingTarget(path: string): Promise<string> {
  let p = path;
  for (let hops = 0; hops < MAX_LINKS; hops++) {
    const st = await lstat(p).catch(() => undefined);
    if (!st?.isSymbolicLink()) return p;
    p = resolve(dirname(p), await readlink(p));
  }
  throw new DamselflyError("DF_ERR_OUTPUT", `output ${path}: too many levels of symbolic links`);
}

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
    throw outputError(outputPath, err);
  }
}

export type Write = (data: Uint8Array) => Promise<void>;

// Writes into an existing device or FIFO: opened write-only, never created,
// truncated or renamed over. Blocks until a FIFO has a reader.
// `length`: the content's, for a digest that hashes it first (gitsha1).
export async function writeInto(path: string, expected: Digest | undefined, fill: (write: Write) => Promise<void>, length?: number): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_NOCTTY);
    // Replaced by a file between the check and the open: writing into it
    // would leave a mix of old and new bytes.
    if ((await fh.stat()).isFile()) throw new DamselflyError("DF_ERR_OUTPUT", `output ${path} became a regular file while it was opened`);
    const hasher = expected ? new Digester(expected.algorithm, needsLength(expected.algorithm) ? length : undefined) : undefined;
    const out = fh;
    await fill(async (data) => {
      hasher?.update(data);
      for (let done = 0; done < data.length; ) done += (await out.write(data, done)).bytesWritten;
    });
    const actual = hasher?.digest();
    if (expected && actual && actual.hex !== expected.hex) throw digestMismatch(expected, actual);
  } catch (err) {
    throw outputError(path, err);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

// Codes meaning "this process cannot use the daemon's store file": another
// user's file, another filesystem or host, or no such path here.
const UNREACHABLE_STORE = new Set(["EXDEV", "EPERM", "EACCES", "ENOENT"]);

// A copy of the daemon's verified store file at `tmp`: a reflink where the
// filesystem can (instant, blocks shared copy-on-write), else a full copy.
// Never a hard link: an output that shares the store file's inode edits the
// cache when it is edited. Returns false when the store is out of this
// process's reach.
export async function copyStoreFile(storePath: string, tmp: string): Promise<boolean> {
  try {
    await copyFile(storePath, tmp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
    return true;
  } catch (err) {
    if (!UNREACHABLE_STORE.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
    await unlink(tmp).catch(() => undefined);
    return false;
  }
}

// The daemon's store file, read in order into `write`; false when it is out
// of this process's reach (nothing was written then).
export async function readStoreFile(storePath: string, write: Write): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await open(storePath, "r");
  } catch (err) {
    if (UNREACHABLE_STORE.has((err as NodeJS.ErrnoException).code ?? "")) return false;
    throw err;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) return true;
      await write(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

function outputError(path: string, err: unknown): DamselflyError {
  const e = DamselflyError.from(err);
  return e.code === "DF_ERR_INTERNAL" ? new DamselflyError("DF_ERR_OUTPUT", `cannot write ${path}: ${e.message}`, { cause: err }) : e;
}
