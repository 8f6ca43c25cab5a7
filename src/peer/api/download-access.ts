import { DamselflyError } from "../../common/errors.js";
import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../common/task-id.js";
import { isCacheUrl, type Download } from "../../protocol/index.js";
import { redact } from "../source/http-source.js";
import type { AccessAnswer, BlobAccess } from "../proxy/blob-access.js";

// A content-addressed download (an OCI blob, keyed by its digest and its
// registry) may be served from this daemon's store or the swarm, which hold
// it for whoever fetched it first: the caller gets it only once the
// registry said yes to the caller's own credentials, as the proxy's mirror
// asks (proxy/blob-access.ts). Fails closed: no answer is a no.
export async function checkDigestRead(access: BlobAccess | undefined, d: Download, signal: AbortSignal): Promise<void> {
  // An imported task has no registry to ask: its ID (the content's hash)
  // is what a reader must know (docs/operations/cache.md).
  if (!d.digestTaskId || isCacheUrl(d.url)) return;
  const where = redact(new URL(d.url));
  const answer = await ask(access, d, signal, false, `whether the caller may read ${d.digest}`);
  if (!answer.allowed)
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", `${where} refused the caller access to ${d.digest} (HTTP ${answer.status})`, {
      sourceStatus: answer.status,
    });
}

// A signed URL (S3/GCS/OSS/COS presigned, or any signature the task ID
// leaves out: common/task-id.ts) names its task without its signature, so
// knowing the object's name and version would be enough to read a copy
// someone else fetched. The caller gets it only once the origin accepts the
// caller's own signature: a GET of the first byte (a presigned URL is signed
// for GET). Yes-answers are reused briefly (proxy.authTtl); fails closed.
export async function checkSignedRead(access: BlobAccess | undefined, d: Download, signal: AbortSignal): Promise<void> {
  if (d.digestTaskId || isCacheUrl(d.url) || !carriesSignature(d)) return;
  const where = redact(new URL(d.url));
  const answer = await ask(access, d, signal, true, "whether the caller's signed URL is valid");
  if (answer.allowed) return;
  const auth = answer.status === 401 || answer.status === 403;
  throw new DamselflyError(auth ? "DF_ERR_SOURCE_AUTH" : "DF_ERR_SOURCE_STATUS", `${where} refused the caller's signed URL (HTTP ${answer.status})`, {
    sourceStatus: answer.status,
  });
}

// The origin's answer for this caller (BlobAccess, with its egress policy);
// not being able to ask is a no too.
async function ask(access: BlobAccess | undefined, d: Download, signal: AbortSignal, ranged: boolean, question: string): Promise<AccessAnswer> {
  if (!access) throw new DamselflyError("DF_ERR_INTERNAL", "no origin access check configured in this daemon");
  try {
    return await access.check(d.url, d.headers, signal, ranged);
  } catch (err) {
    const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
    if (e.code === "DF_ERR_EGRESS_DENIED" || e.code === "DF_ERR_CANCELLED") throw e;
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `cannot ask ${redact(new URL(d.url))} ${question}: ${e.message}`, { cause: err });
  }
}

// Query parameters that are signatures or credentials (not containerd's
// namespace parameter, which the task ID also leaves out).
function carriesSignature(d: Download): boolean {
  const names = new Set([...DEFAULT_FILTERED_QUERY_PARAMS, ...d.filteredQueryParams].map((p) => p.toLowerCase()));
  names.delete("ns");
  for (const k of new URL(d.url).searchParams.keys()) if (names.has(k.toLowerCase())) return true;
  return false;
}
