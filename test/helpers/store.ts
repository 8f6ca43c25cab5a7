// Small helpers for end-to-end tests that look at a daemon's task store and at
// `get` outputs: temp dirs with cleanup, file hashes, pieces.log parsing,
// polling, and the `get` summary line.
import { LocalTask } from "../../src/peer/storage/local-task.js";
import { Storage } from "../../src/peer/storage/storage.js";
import { createLogger } from "../../src/common/logger.js";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { Cleanup } from "./procs.js";

// A temp dir removed at the end of the test/suite (even on failure).
export function tempDir(t: Cleanup, prefix = "damselfly-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// A real task store in a temp dir with one task of known size (no pieces
// yet), closed and removed at the end of the test.
export async function storedTask(
  t: Cleanup,
  id: string,
  contentLength: number,
  pieceLength: number,
  prefix?: string,
): Promise<{ storage: Storage; task: LocalTask }> {
  const storage = new Storage(tempDir(t, prefix), createLogger("silent"));
  await storage.load();
  t.after(() => storage.close());
  const task = await storage.getOrCreate(id, { url: "http://o/x", tag: "", application: "", filteredQueryParams: [], pieceLength: 0 });
  await task.setInfo(contentLength, pieceLength);
  return { storage, task };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

// tasks/<id[0:3]>/<id> under a daemon's --data-dir.
export function taskDir(dataDir: string, id: string): string {
  return join(dataDir, "tasks", id.slice(0, 3), id);
}

export interface StoredPiece {
  number: number;
  crc: number;
  length: number;
}

// The verified pieces recorded in pieces.log ("<n> <crc> <len>"; "-<n>" drops
// a piece). A line cut short by a crash is ignored. Missing log: no pieces.
export function storedPieces(dataDir: string, id: string): Map<number, StoredPiece> {
  const file = join(taskDir(dataDir, id), "pieces.log");
  return existsSync(file) ? LocalTask.parseLog(readFileSync(file, "utf8")) : new Map();
}

export interface StoredMeta {
  id: string;
  url: string;
  contentLength: number;
  pieceLength: number;
  done: boolean;
}

export function storedMeta(dataDir: string, id: string): StoredMeta | undefined {
  const file = join(taskDir(dataDir, id), "task.json");
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as StoredMeta;
  } catch {
    return undefined; // being rewritten
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Polls until check() returns a value other than undefined/false.
export async function pollUntil<T>(check: () => T | undefined | false, what: string, timeoutMs = 30_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface GetSummary {
  line: string;
  fromPeers: string;
  fromOrigin: string;
  local: string;
}

// "damselfly get: 64.0 MiB in 1.23s (...) -> /out; from peers X, from origin Y, local Z; task ..."
export function getSummary(stderr: string): GetSummary | undefined {
  const line = stderr.split("\n").find((l) => l.startsWith("damselfly get: ") && l.includes(" -> "));
  if (!line) return undefined;
  const m = /from peers ([^,]+), from origin ([^,]+), local ([^;]+);/.exec(line);
  if (!m) return undefined;
  return { line, fromPeers: m[1]!, fromOrigin: m[2]!, local: m[3]! };
}

// The last daemon log lines (minus per-piece chatter), for failure messages.
export function logTail(d: { name: string; proc: { logs: readonly { msg: string; [k: string]: unknown }[] } }, n = 25): string {
  const skip = new Set(["level", "time", "pid", "hostname", "msg"]);
  return d.proc.logs
    .filter((l) => l.msg !== "piece finished")
    .slice(-n)
    .map((l) => `${d.name}: ${l.msg} ${JSON.stringify(Object.fromEntries(Object.entries(l).filter(([k]) => !skip.has(k))))}`)
    .join("\n");
}

// A `get` that did not finish in time rejects; add what the daemons logged.
export function explained<T>(p: Promise<T>, ...daemons: Parameters<typeof logTail>[0][]): Promise<T> {
  return p.catch((err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    e.message += `\n--- daemon logs ---\n${daemons.map((d) => logTail(d)).join("\n")}`;
    throw e;
  });
}

// The files under `dir` (relative paths, sorted) as `get -r` laid them out;
// its resume markers (DIR/.cache/damselfly) are not part of the layout.
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (!(d === dir && e.name === ".cache")) walk(join(d, e.name));
      } else out.push(relative(dir, join(d, e.name)));
    }
  };
  walk(dir);
  return out.sort();
}

// The files under `dir` (a daemon's data dir) smaller than `maxBytes` whose
// bytes contain `secret`: a token must be in none (task data, larger, is
// random bytes and skipped).
export function filesHolding(dir: string, secret: string, maxBytes: number): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => ({ e, path: join(e.parentPath, e.name) }))
    .filter(({ e, path }) => e.isFile() && statSync(path).size < maxBytes && readFileSync(path).includes(secret))
    .map(({ path }) => path);
}
