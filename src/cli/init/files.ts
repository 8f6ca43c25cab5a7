// How `damselfly init` touches system config files: the previous file is
// kept as <file>.damselfly-backup-<YYYYMMDDHHMMSS>, the new one is written to
// a temporary file beside it and renamed into place, so a runtime reading the
// file (podman reads registries.conf on every run) never sees half of it.
import { randomBytes } from "node:crypto";
import { chown, constants, copyFile, mkdir, open, readFile, realpath, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DamselflyError } from "../../common/errors.js";

export interface FileChange {
  path: string;
  content: string;
}

export interface Output {
  write(s: string): unknown;
}

export interface ApplyOptions {
  dryRun: boolean;
  out: Output;
  // Clock for backup names (tests).
  now?: Date;
}

// "EACCES: permission denied, open '/x'" -> "permission denied (EACCES)":
// the path is already in our own message.
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const m = typeof e?.code === "string" ? /^[A-Z]+: (.*?)(?:, \w+ '.*')?$/.exec(e.message) : null;
  const base = m ? `${m[1]} (${e.code})` : err instanceof Error ? err.message : String(err);
  return e?.code === "EACCES" || e?.code === "EPERM" ? `${base}: run as root, or pass a path you can access` : base;
}

export function fileError(action: string, path: string, err: unknown): DamselflyError {
  if (err instanceof DamselflyError) return err;
  return new DamselflyError(DamselflyError.from(err, "DF_ERR_OUTPUT").code, `cannot ${action} ${path}: ${reason(err)}`, { cause: err });
}

// The file's text, or undefined when it does not exist yet.
export async function readExisting(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fileError("read", path, err);
  }
}

function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

export function backupPath(path: string, now: Date): string {
  return `${path}.damselfly-backup-${timestamp(now)}`;
}

// Copies path to a fresh backup name; a second run within the same second
// gets "-1", "-2", ... rather than overwriting the first backup (which may be
// the only copy of the user's original file).
async function backup(path: string, now: Date): Promise<string> {
  const base = backupPath(path, now);
  for (let i = 0; ; i++) {
    const name = i === 0 ? base : `${base}-${i}`;
    try {
      await copyFile(path, name, constants.COPYFILE_EXCL);
      return name;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || i >= 99) throw fileError("back up", path, err);
    }
  }
}

// Writes through a symlink (e.g. a registries.conf managed elsewhere) rather
// than replacing the link with a plain file.
async function resolveTarget(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return path;
    throw fileError("resolve", path, err);
  }
}

async function writeAtomic(path: string, content: string, like: { mode: number; uid: number; gid: number } | undefined): Promise<void> {
  const dir = dirname(path);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw fileError("create directory", dir, err);
  }
  const tmp = join(dir, `.${basename(path)}.damselfly-${randomBytes(4).toString("hex")}.tmp`);
  try {
    const fh = await open(tmp, "wx", like ? like.mode & 0o7777 : 0o644);
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    // Root rewriting a file owned by a service account keeps that owner.
    if (like && process.getuid?.() === 0) await chown(tmp, like.uid, like.gid).catch(() => undefined);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fileError("write", path, err);
  }
}

// Writes each change (or, with dryRun, prints it) and says what it did.
export async function applyChanges(changes: readonly FileChange[], o: ApplyOptions): Promise<void> {
  const now = o.now ?? new Date();
  if (o.dryRun) {
    for (const c of changes) o.out.write(`==> ${c.path} <==\n${c.content}${c.content.endsWith("\n") ? "" : "\n"}\n`);
    o.out.write("dry run: nothing was written\n");
    return;
  }
  for (const c of changes) {
    const target = await resolveTarget(c.path);
    const old = await readExisting(target);
    if (old === c.content) {
      o.out.write(`unchanged: ${target}\n`);
      continue;
    }
    let like: { mode: number; uid: number; gid: number } | undefined;
    if (old !== undefined) {
      try {
        like = await stat(target);
      } catch (err) {
        throw fileError("stat", target, err);
      }
      o.out.write(`backup: ${await backup(target, now)}\n`);
    }
    await writeAtomic(target, c.content, like);
    o.out.write(`wrote: ${target}\n`);
  }
}
