// `damselfly get -r hf://OWNER/REPO[/FOLDER] -O DIR`: the tree at one commit
// (the revision is pinned first, so every file comes from the same commit),
// filtered by --include/--exclude, laid out under DIR as
// `huggingface-cli download --local-dir` does (paths relative to FOLDER),
// each file one ordinary single-file get (its own task, atomic write).
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, resolve, sep } from "node:path";
import { DamselflyError } from "../common/errors.js";
import { hfEndpoint, hfToken, isHfUrl } from "../common/hf/hf-resolve.js";
import { hfFolderListing, type ObjectListing, relativeUnder, s3PrefixListing, wantedPath } from "../common/object-listing.js";
import { isS3Url } from "../common/s3/s3-config.js";
import type { GetConfig } from "../common/schemas.js";
import type { daemonv1 } from "../protocol/index.js";
import { formatBytes } from "./format.js";
import { type GetIo, runGet } from "./get.js";
import { SetDisplay, SetProgress } from "./set-progress.js";

export { parseHfFolder } from "../common/hf/hf-list.js";

// The path under DIR of a listed file, or undefined when it must not be
// written: a hostile listing never names a file outside DIR.
export function safeRelative(path: string, folder: string, dir: string): string | undefined {
  const rel = relativeUnder(path, folder);
  if (rel === undefined) return undefined;
  const full = resolve(dir, rel);
  return full.startsWith(dir + sep) ? rel : undefined;
}

function wanted(rel: string, config: GetConfig): boolean {
  return wantedPath(rel, config.include, config.exclude);
}

interface SetTotals {
  files: number;
  skipped: number;
  bytes: bigint;
  peers: bigint;
  origin: bigint;
  local: bigint;
}

// Runs `work` over `items`, at most `limit` at once; the first failure stops new work and is thrown.
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++] as T;
      await work(item).catch((e: unknown) => {
        failed ??= e;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

// What a recursive get lists (common/object-listing.ts), and the options
// each file's single-file get runs with.
interface Listing extends ObjectListing {
  overrides: Partial<GetConfig>;
}

async function hfListing(rawUrl: string, config: GetConfig): Promise<Listing> {
  const listing = await hfFolderListing(rawUrl, { endpoint: hfEndpoint(config.hfEndpoint), revision: config.hfRevision || "main", token: hfToken() });
  return { ...listing, overrides: { hfRevision: listing.commit } };
}

async function s3Listing(rawUrl: string, config: GetConfig): Promise<Listing> {
  const listing = await s3PrefixListing(rawUrl, { endpoint: config.s3Endpoint, region: config.s3Region, pathStyle: config.s3PathStyle });
  return { ...listing, overrides: {} };
}

// Resume markers, as huggingface-cli keeps .cache/huggingface/download/: for
// each file fetched, the content id it was fetched as and the file's size and
// mtime then. A file is skipped only when its marker still matches: a file
// changed upstream (new id) or locally (new size or mtime) is fetched again.
const markerPath = (dir: string, rel: string): string => resolve(dir, ".cache", "damselfly", `${rel}.id`);
const markerText = (id: string, size: number, mtimeMs: number): string => `${id} ${size} ${Math.floor(mtimeMs)}\n`;

async function isDone(dir: string, f: { rel: string; size: number; id: string }): Promise<boolean> {
  const have = await stat(resolve(dir, f.rel)).catch(() => undefined);
  if (!have?.isFile() || f.size < 0 || have.size !== f.size || f.id === "") return false;
  const marker = await readFile(markerPath(dir, f.rel), "utf8").catch(() => "");
  return marker === markerText(f.id, have.size, have.mtimeMs);
}

async function markDone(dir: string, f: { rel: string; id: string }): Promise<void> {
  if (f.id === "") return;
  const have = await stat(resolve(dir, f.rel));
  const path = markerPath(dir, f.rel);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, markerText(f.id, have.size, have.mtimeMs));
}

export async function runRecursiveGet(rawUrl: string, config: GetConfig, io: GetIo): Promise<SetTotals> {
  if (!isHfUrl(rawUrl) && !isS3Url(rawUrl)) throw new DamselflyError("DF_ERR_USAGE", "-r/--recursive supports hf:// and s3:// URLs");
  if (config.output === "" || config.output === "-") throw new DamselflyError("DF_ERR_USAGE", "-r needs -O DIR (a directory)");
  const dir = resolve(config.output);
  const listing = isHfUrl(rawUrl) ? await hfListing(rawUrl, config) : await s3Listing(rawUrl, config);
  const files: { url: string; rel: string; size: number; id: string }[] = [];
  for (const e of listing.entries) {
    const rel = safeRelative(e.path, listing.folder, dir);
    const url = rel === undefined ? "" : listing.urlOf(e.path);
    if (rel === undefined || url === "") {
      io.stderr.write(`${io.prefix}: skipping ${JSON.stringify(e.path)}: not a safe path under ${dir}\n`);
      continue;
    }
    if (wanted(rel, config)) files.push({ url, rel, size: e.size, id: e.id });
  }
  if (files.length === 0) throw new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", `no file under ${rawUrl} (${listing.label}) matches --include/--exclude`);
  const totals: SetTotals = { files: 0, skipped: 0, bytes: 0n, peers: 0n, origin: 0n, local: 0n };
  const model = new SetProgress(files.map((f) => f.size));
  const display = new SetDisplay(io.stderr, config.progress, model);
  // Each file draws no bar of its own: its progress feeds the set's display
  // and its summary line is printed above it.
  const fileConfig = { ...config, ...listing.overrides, digest: "", progress: false };
  try {
    await pool([...files.entries()], config.concurrency, async ([i, f]) => {
      if (await isDone(dir, f)) {
        model.skip(i, f.size);
        totals.skipped++;
        totals.bytes += BigInt(f.size);
        return;
      }
      const out = resolve(dir, f.rel);
      await mkdir(dirname(out), { recursive: true });
      const fileIo: GetIo = { ...io, stderr: display.lines, onProgress: (done, total) => model.progress(i, done, total) };
      const done: daemonv1.DownloadFinished = await runGet(f.url, { ...fileConfig, output: out }, fileIo);
      await markDone(dir, f);
      model.finish(i, Number(done.contentLength));
      totals.files++;
      totals.bytes += done.contentLength;
      totals.peers += done.bytesFromPeers;
      totals.origin += done.bytesFromSource;
      totals.local += done.bytesLocal;
    });
  } finally {
    display.stop();
  }
  io.stderr.write(
    `${io.prefix}: ${totals.files + totals.skipped} files (${totals.skipped} already present), ${formatBytes(totals.bytes)} -> ${dir}; ` +
      `from peers ${formatBytes(totals.peers)}, from origin ${formatBytes(totals.origin)}, local ${formatBytes(totals.local)}; ${listing.label}\n`,
  );
  return totals;
}
