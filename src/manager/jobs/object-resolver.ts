// s3:// and hf:// preheat URLs, resolved by the manager into one Download
// per file: exactly the Download `damselfly get` of that file computes
// (common/s3/s3-resolve.ts, common/hf/hf-resolve.ts), so a later get is a
// local or P2P hit. A recursive URL is listed and filtered as `get -r` does
// (common/object-listing.ts). S3 is signed here with the manager's own
// credentials and the seed peers get short-lived presigned URLs only; a hub
// token goes to a seed peer only for a plain file of a repository that
// refuses anonymous reads (an LFS file's CDN URL authorises itself).
import type { Dispatcher } from "undici";
import { isLoopbackHost } from "../../common/address.js";
import { DamselflyError } from "../../common/errors.js";
import { hfEndpoint, isHfUrl, parseHfUrl, resolveHf } from "../../common/hf/hf-resolve.js";
import { parseHfFolder } from "../../common/hf/hf-list.js";
import { hfFolderListing, type ObjectListing, relativeUnder, s3PrefixListing, wantedPath } from "../../common/object-listing.js";
import { isS3Url, parseS3Url, type S3Options } from "../../common/s3/s3-config.js";
import { resolveS3, s3TaskTag } from "../../common/s3/s3-resolve.js";
import type { Download } from "../../protocol/index.js";
import { fileDownload, type JobArgs } from "./job-types.js";

export interface ObjectSources {
  s3: S3Options;
  // "" : HF_ENDPOINT, else huggingface.co.
  hfEndpoint: string;
}

export interface PreheatDownload {
  // What the job's result shows: the s3:// or hf:// URL (never a signature).
  url: string;
  download: Download;
  // The download carries the job's hub token (sent over mutual TLS only).
  secret?: boolean;
}

// A file of a recursive preheat, resolved just before its task is sent: its
// presigned or CDN URL is fresh however long the job has run.
export interface LazyPreheatDownload {
  url: string;
  resolve(): Promise<PreheatDownload>;
}

// The schedulers a download may be sent to: one that carries the job's hub
// token crosses the network only over mutual TLS (without it, only to a
// scheduler on this host's loopback).
export function schedulersFor<S extends { ip: string }>(schedulers: S[], d: Pick<PreheatDownload, "secret">, mutualTls: boolean): S[] {
  return d.secret && !mutualTls ? schedulers.filter((s) => isLoopbackHost(s.ip)) : schedulers;
}

export function isObjectUrl(url: string): boolean {
  return isS3Url(url) || isHfUrl(url);
}

// The API's checks, before the job exists: a well-formed URL and options
// that make sense for it.
export function checkObjectArgs(args: JobArgs): void {
  const url = args.url ?? "";
  const usage = (why: string) => new DamselflyError("DF_ERR_USAGE", why);
  if (!isObjectUrl(url)) {
    if (args.recursive || args.include?.length || args.exclude?.length) throw usage("recursive, include and exclude apply to s3:// and hf:// URLs");
    if (args.hf_revision || args.hf_token) throw usage("hf_revision and hf_token apply to hf:// URLs");
    return;
  }
  if (args.type !== "file") throw usage(`an ${url.slice(0, 5)} URL is preheated as type file`);
  if (isS3Url(url) && (args.hf_revision || args.hf_token)) throw usage("hf_revision and hf_token apply to hf:// URLs");
  if (!args.recursive && (args.include?.length || args.exclude?.length)) throw usage("include and exclude need recursive");
  if (!args.recursive) {
    if (isS3Url(url)) parseS3Url(url);
    else parseHfUrl(url);
  } else if (isHfUrl(url)) parseHfFolder(url);
  else if (!/^s3:\/\/[^/?#]+(?:\/[^?#]*)?$/i.test(url))
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(url)}: expected s3://BUCKET[/PREFIX/]`);
}

// One URL is resolved at once (its errors fail the job); a recursive one is
// listed and filtered at once, its files resolved one by one later.
export async function resolveObjects(args: JobArgs, sources: ObjectSources, dispatcher: Dispatcher): Promise<(PreheatDownload | LazyPreheatDownload)[]> {
  const url = args.url ?? "";
  const hub = { endpoint: hfEndpoint(sources.hfEndpoint), revision: args.hf_revision || "main", token: args.hf_token ?? "" };
  if (!args.recursive) return [await resolveOne(url, args, sources, hub, dispatcher)];
  const listing = isHfUrl(url) ? await hfFolderListing(url, { ...hub, dispatcher }) : await s3PrefixListing(url, sources.s3, process.env, dispatcher);
  // Every file from the one commit the revision named when listed, as get -r does.
  if (listing.commit !== "") hub.revision = listing.commit;
  const urls = selected(listing, args.include ?? [], args.exclude ?? []);
  if (urls.length === 0) throw new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", `no file under ${url} (${listing.label}) matches include/exclude`);
  return urls.map((u) => ({ url: u, resolve: () => resolveOne(u, args, sources, hub, dispatcher) }));
}

async function resolveOne(
  u: string,
  args: JobArgs,
  sources: ObjectSources,
  hub: { endpoint: string; revision: string; token: string },
  dispatcher: Dispatcher,
): Promise<PreheatDownload> {
  if (isS3Url(u)) {
    const s3 = await resolveS3(u, sources.s3, process.env, dispatcher);
    return { url: u, download: fileDownload({ ...args, url: s3.url, tag: s3TaskTag(args.tag ?? "", s3.identity) }, args.headers ?? {}) };
  }
  const hf = await resolveHf(u, hub, dispatcher);
  const headers = { ...hf.headers, ...args.headers };
  const secret = Object.keys(hf.headers).length > 0;
  // Keyed and checked by the hub's sha256 (LFS) or git blob id (plain), as get keys them.
  const d = fileDownload({ ...args, url: hf.url }, headers);
  d.digest = hf.digest;
  d.digestTaskId = true;
  return { url: u, download: d, secret };
}

// The single-file URLs of the listed files the globs select; a path that is
// not a plain relative one under the folder is skipped, as get -r skips it.
function selected(listing: ObjectListing, include: readonly string[], exclude: readonly string[]): string[] {
  const out: string[] = [];
  for (const e of listing.entries) {
    const rel = relativeUnder(e.path, listing.folder);
    const u = rel === undefined ? "" : listing.urlOf(e.path);
    if (rel !== undefined && u !== "" && wantedPath(rel, include, exclude)) out.push(u);
  }
  return out;
}
