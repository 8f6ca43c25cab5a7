import { DamselflyError } from "../../common/errors.js";
import { isCacheUrl, type Download } from "../../protocol/index.js";
import { redact } from "../source/http-source.js";
import type { BlobAccess } from "../proxy/blob-access.js";

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
  if (!access) throw new DamselflyError("DF_ERR_INTERNAL", "no registry access check configured for a digest-keyed download");
  let answer;
  try {
    answer = await access.check(d.url, d.headers, signal);
  } catch (err) {
    const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
    if (e.code === "DF_ERR_EGRESS_DENIED" || e.code === "DF_ERR_CANCELLED") throw e;
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `cannot ask ${where} whether the caller may read ${d.digest}: ${e.message}`, { cause: err });
  }
  if (!answer.allowed)
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", `${where} refused the caller access to ${d.digest} (HTTP ${answer.status})`, {
      sourceStatus: answer.status,
    });
}
