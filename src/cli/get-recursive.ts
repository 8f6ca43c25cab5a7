// `damselfly get -r hf://OWNER/REPO[/FOLDER] -O DIR`: the tree at one commit
// (the revision is pinned first, so every file comes from the same commit),
// filtered by --include/--exclude, laid out under DIR as
// `huggingface-cli download --local-dir` does (paths relative to FOLDER),
// each file one ordinary single-file get (its own task, atomic write).
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, matchesGlob, resolve, sep } from "node:path";
import { request } from "undici";
import { DamselflyError } from "../common/errors.js";
import { hfEndpoint, hfToken, isHfUrl } from "../common/hf/hf-resolve.js";
import { isS3Url } from "../common/s3/s3-config.js";
import { listS3Prefix } from "../common/s3/s3-list.js";
import type { GetConfig } from "../common/schemas.js";
import type { daemonv1 } from "../protocol/index.js";
import { formatBytes } from "./format.js";
import { type GetIo, runGet } from "./get.js";
import { SetDisplay, SetProgress } from "./set-progress.js";

// More files than this is a mistake (a whole dataset), not a download.
export const MAX_RECURSIVE_FILES = 10_000;
const MAX_PAGES = 1_000;
const API_TIMEOUT_MS = 30_000;

interface HfTreeEntry {
  type: string;
  path: string;
  size?: number;
  oid?: string;
  lfs?: { size?: number; oid?: string };
}

interface HfFolder {
  kind: string; // "models", "datasets" or "spaces"
  urlPrefix: string; // "", "datasets/" or "spaces/"
  repo: string;
  folder: string; // "" for the whole repository
}

export function parseHfFolder(raw: string): HfFolder {
  const segs = raw.slice("hf://".length).split("/");
  const first = segs[0] ?? "";
  const kind = first === "datasets" || first === "spaces" ? first : "models";
  if (first === "models" || first === "datasets" || first === "spaces") segs.shift();
  while (segs.length > 2 && segs[segs.length - 1] === "") segs.pop();
  if (segs.length < 2 || segs.slice(0, 2).some((s) => s === "") || segs.some((s) => s === "." || s === "..")) {
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(raw)}: expected hf://[models/|datasets/|spaces/]OWNER/REPO[/FOLDER]`);
  }
  return { kind, urlPrefix: kind === "models" ? "" : `${kind}/`, repo: `${segs[0]}/${segs[1]}`, folder: segs.slice(2).join("/") };
}

// The path under DIR of a listed file, or undefined when it must not be
// written: a hostile listing (`..`, absolute, backslashes, control bytes)
// never names a file outside DIR.
export function safeRelative(path: string, folder: string, dir: string): string | undefined {
  const prefix = folder === "" ? "" : `${folder}/`;
  if (!path.startsWith(prefix)) return undefined;
  const rel = path.slice(prefix.length);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control bytes are what is refused
  if (rel === "" || isAbsolute(rel) || rel.includes("\\") || /[\u0000-\u001f]/.test(rel)) return undefined;
  if (rel.split("/").some((s) => s === "" || s === "." || s === "..")) return undefined;
  const full = resolve(dir, rel);
  return full.startsWith(dir + sep) ? rel : undefined;
}

// A glob with no '/' also matches the file name at any depth (as
// `--include '*.safetensors'` is meant, and as fnmatch in huggingface-cli does).
function globMatch(rel: string, glob: string): boolean {
  return matchesGlob(rel, glob) || (!glob.includes("/") && matchesGlob(basename(rel), glob));
}

function wanted(rel: string, config: GetConfig): boolean {
  if (config.include.length > 0 && !config.include.some((g) => globMatch(rel, g))) return false;
  return !config.exclude.some((g) => globMatch(rel, g));
}

async function hubJson(url: string, token: string): Promise<{ body: unknown; next: string }> {
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, headersTimeout: API_TIMEOUT_MS, bodyTimeout: API_TIMEOUT_MS });
  } catch (err) {
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `Hugging Face Hub unreachable (${new URL(url).origin})`, { cause: err, temporary: true });
  }
  if (res.statusCode !== 200) {
    const code = String(res.headers["x-error-code"] ?? "");
    res.body.resume();
    const where = `${url}: HTTP ${res.statusCode}${code ? ` (${code})` : ""}`;
    if (res.statusCode === 401 || res.statusCode === 403)
      throw new DamselflyError("DF_ERR_SOURCE_AUTH", `${where}; set HF_TOKEN to a token allowed to read it`);
    if (res.statusCode === 404) throw new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", where);
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", where, { temporary: res.statusCode >= 500 });
  }
  const link = String(res.headers["link"] ?? "");
  const next = /<([^>]+)>;\s*rel="next"/.exec(link)?.[1] ?? "";
  return { body: await res.body.json(), next };
}

// The commit the revision names, then every file under the folder at it.
async function listHf(loc: HfFolder, config: GetConfig): Promise<{ commit: string; entries: HfTreeEntry[] }> {
  const endpoint = hfEndpoint(config.hfEndpoint);
  const token = hfToken();
  const rev = encodeURIComponent(config.hfRevision || "main");
  const info = (await hubJson(`${endpoint}/api/${loc.kind}/${loc.repo}/revision/${rev}`, token)).body as { sha?: string };
  const commit = info.sha ?? "";
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub gave no commit for ${loc.repo}@${rev}`);
  const folder = loc.folder === "" ? "" : `/${loc.folder.split("/").map(encodeURIComponent).join("/")}`;
  let url = `${endpoint}/api/${loc.kind}/${loc.repo}/tree/${commit}${folder}?recursive=true`;
  const entries: HfTreeEntry[] = [];
  for (let page = 0; url !== "" && page < MAX_PAGES; page++) {
    const { body, next } = await hubJson(url, token);
    if (!Array.isArray(body)) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub sent a tree that is not a list for ${loc.repo}`);
    for (const e of body as HfTreeEntry[]) if (e.type === "file") entries.push(e);
    if (entries.length > MAX_RECURSIVE_FILES) {
      throw new DamselflyError(
        "DF_ERR_USAGE",
        `${loc.repo} has more than ${MAX_RECURSIVE_FILES} files under ${loc.folder || "/"}: narrow it with a folder or --include`,
      );
    }
    url = next === "" ? "" : new URL(next, endpoint).href;
  }
  return { commit, entries };
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

// What a recursive get lists: files under `folder` and how to fetch each.
interface Listing {
  folder: string;
  // id: what the content is (an LFS sha256, a blob id, an ETag), for the resume marker.
  entries: { path: string; size: number; id: string }[];
  // The single-file URL of a listed path, or "" when it cannot be one.
  urlOf: (path: string) => string;
  overrides: Partial<GetConfig>;
  label: string;
}

async function hfListing(rawUrl: string, config: GetConfig): Promise<Listing> {
  const loc = parseHfFolder(rawUrl);
  const { commit, entries } = await listHf(loc, config);
  const kind = loc.kind === "models" ? "" : `${loc.kind}/`;
  return {
    folder: loc.folder,
    entries: entries.map((e) => ({ path: e.path, size: e.lfs?.size ?? e.size ?? -1, id: e.lfs?.oid ?? e.oid ?? "" })),
    urlOf: (path) => `hf://${kind}${loc.repo}/${path}`,
    overrides: { hfRevision: commit },
    label: `commit ${commit.slice(0, 12)}`,
  };
}

async function s3Listing(rawUrl: string, config: GetConfig): Promise<Listing> {
  const m = /^s3:\/\/([^/?#]+)(?:\/([^?#]*))?$/i.exec(rawUrl);
  if (!m) throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(rawUrl)}: expected s3://BUCKET[/PREFIX/]`);
  const bucket = m[1]!;
  const folder = (m[2] ?? "").replace(/\/+$/, "");
  const opts = { endpoint: config.s3Endpoint, region: config.s3Region, pathStyle: config.s3PathStyle };
  const entries = (await listS3Prefix(bucket, folder === "" ? "" : `${folder}/`, opts, MAX_RECURSIVE_FILES)).map((o) => ({
    path: o.key,
    size: o.size,
    id: o.etag,
  }));
  return { folder, entries, urlOf: (key) => (/[?#]/.test(key) ? "" : `s3://${bucket}/${key}`), overrides: {}, label: `s3://${bucket}` };
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
