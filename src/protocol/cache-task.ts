import { create } from "@bufbuild/protobuf";
import { parseDigest, formatDigest } from "../common/digest.js";
import { DamselflyError } from "../common/errors.js";
import { taskId } from "../common/task-id.js";
import { downloadTaskId } from "./downloads.js";
import { DownloadSchema, type Download } from "./gen/damselfly/common/v1/common_pb.js";

// Imported tasks (`damselfly cache import`): content with no origin. Their
// task ID is the digest-keyed task ID (common/task-id.ts) of the content's
// sha256 under this fixed pseudo-URL, whose registry ("damselfly-cache://import")
// no real origin has: the same bytes imported twice, on any node, are one
// task, and one that knows only the ID can check a claimed digest against it
// (isCacheDigestOf) and then the content against the digest. Nothing ever
// fetches this URL: downloads of it never go back to source.
export const CACHE_URL = "damselfly-cache://import/";
const CACHE_SCHEME = "damselfly-cache:";

export function isCacheUrl(url: string): boolean {
  return url.startsWith(CACHE_SCHEME);
}

// "sha256:<hex>", lower-case; throws DF_ERR_INVALID_DIGEST for anything else.
export function cacheDigest(digest: string): string {
  const d = parseDigest(digest);
  if (d.algorithm !== "sha256") throw new DamselflyError("DF_ERR_INVALID_DIGEST", `an imported task is keyed by sha256, not ${d.algorithm}`);
  return formatDigest(d);
}

export function cacheTaskId(digest: string): string {
  return taskId({ url: CACHE_URL, digest });
}

// True when `digest` is what the imported task `id` is made of: the only
// way a claimed digest (from a scheduler or a peer) is believed.
export function isCacheDigestOf(id: string, digest: string): boolean {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) return false;
  return cacheTaskId(digest) === id;
}

// The download of an imported task: digest-keyed (the content is checked
// against the digest before the task is done) and never from an origin.
export function cacheDownload(digest: string): Download {
  return create(DownloadSchema, { url: CACHE_URL, digest, digestTaskId: true, disableBackToSource: true });
}

// An imported task's download as a peer sent it: the URL, the digest its ID
// is made of, digest-keyed. `id`: the task it claims to be.
export function isCacheDownloadOf(d: Download, id: string): boolean {
  return isCacheUrl(d.url) && d.digestTaskId && isCacheDigestOf(id, d.digest) && downloadTaskId(d) === id;
}
