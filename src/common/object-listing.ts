// The files a recursive hf:// or s3:// URL names, as single-file URLs: the
// listing (hf/hf-list.ts, s3/s3-list.ts), the paths relative to the folder,
// and the --include/--exclude globs. `get -r` and the manager's preheat jobs
// both select through here, so a preheat covers exactly the files a later
// `get -r` of the same URL fetches.
import { basename, isAbsolute, matchesGlob } from "node:path";
import type { Dispatcher } from "undici";
import { DamselflyError } from "./errors.js";
import { listHf, parseHfFolder } from "./hf/hf-list.js";
import type { S3Options } from "./s3/s3-config.js";
import { listS3Prefix } from "./s3/s3-list.js";

// More files than this is a mistake (a whole dataset), not a download.
export const MAX_RECURSIVE_FILES = 10_000;

export interface ObjectListing {
  folder: string;
  // id: what the content is (an LFS sha256, a blob id, an ETag).
  entries: { path: string; size: number; id: string }[];
  // The single-file URL of a listed path, or "" when it cannot be one.
  urlOf: (path: string) => string;
  // hf://: the commit the revision named when listed ("" for s3://).
  commit: string;
  label: string;
}

export async function hfFolderListing(
  rawUrl: string,
  opts: { endpoint: string; revision: string; token: string; dispatcher?: Dispatcher | undefined },
): Promise<ObjectListing> {
  const loc = parseHfFolder(rawUrl);
  const { commit, entries } = await listHf(loc, { ...opts, maxFiles: MAX_RECURSIVE_FILES });
  const kind = loc.kind === "models" ? "" : `${loc.kind}/`;
  return {
    folder: loc.folder,
    entries: entries.map((e) => ({ path: e.path, size: e.lfs?.size ?? e.size ?? -1, id: e.lfs?.oid ?? e.oid ?? "" })),
    urlOf: (path) => `hf://${kind}${loc.repo}/${path}`,
    commit,
    label: `commit ${commit.slice(0, 12)}`,
  };
}

export async function s3PrefixListing(rawUrl: string, opts: S3Options, env: NodeJS.ProcessEnv = process.env, dispatcher?: Dispatcher): Promise<ObjectListing> {
  const m = /^s3:\/\/([^/?#]+)(?:\/([^?#]*))?$/i.exec(rawUrl);
  if (!m) throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(rawUrl)}: expected s3://BUCKET[/PREFIX/]`);
  const bucket = m[1]!;
  const folder = (m[2] ?? "").replace(/\/+$/, "");
  const listed = await listS3Prefix(bucket, folder === "" ? "" : `${folder}/`, opts, MAX_RECURSIVE_FILES, env, dispatcher);
  const entries = listed.map((o) => ({ path: o.key, size: o.size, id: o.etag }));
  return { folder, entries, urlOf: (key) => (/[?#]/.test(key) ? "" : `s3://${bucket}/${key}`), commit: "", label: `s3://${bucket}` };
}

// The path of a listed file relative to `folder`, or undefined when it is
// not a plain relative path (`..`, absolute, backslashes, control bytes): a
// hostile listing never names a file outside the folder.
export function relativeUnder(path: string, folder: string): string | undefined {
  const prefix = folder === "" ? "" : `${folder}/`;
  if (!path.startsWith(prefix)) return undefined;
  const rel = path.slice(prefix.length);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control bytes are what is refused
  if (rel === "" || isAbsolute(rel) || rel.includes("\\") || /[\u0000-\u001f]/.test(rel)) return undefined;
  if (rel.split("/").some((s) => s === "" || s === "." || s === "..")) return undefined;
  return rel;
}

// A glob with no '/' also matches the file name at any depth (as
// `--include '*.safetensors'` is meant, and as fnmatch in huggingface-cli does).
function globMatch(rel: string, glob: string): boolean {
  return matchesGlob(rel, glob) || (!glob.includes("/") && matchesGlob(basename(rel), glob));
}

export function wantedPath(rel: string, include: readonly string[], exclude: readonly string[]): boolean {
  if (include.length > 0 && !include.some((g) => globMatch(rel, g))) return false;
  return !exclude.some((g) => globMatch(rel, g));
}
