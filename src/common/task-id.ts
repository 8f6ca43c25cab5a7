import { createHash } from "node:crypto";
import { DamselflyError } from "./errors.js";

// Query parameters that carry signatures or credentials: two signed URLs for the
// same object must map to one task, and secrets must never reach the task ID
// input, logs or disk. Compared case-insensitively.
export const DEFAULT_FILTERED_QUERY_PARAMS: readonly string[] = [
  // AWS S3 (SigV4 and SigV2)
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Date",
  "X-Amz-Expires",
  "X-Amz-SignedHeaders",
  "X-Amz-Signature",
  "X-Amz-Security-Token",
  "X-Amz-User-Agent",
  "AWSAccessKeyId",
  "Signature",
  "Expires",
  // Google Cloud Storage
  "X-Goog-Algorithm",
  "X-Goog-Credential",
  "X-Goog-Date",
  "X-Goog-Expires",
  "X-Goog-SignedHeaders",
  "X-Goog-Signature",
  "GoogleAccessId",
  // Alibaba OSS
  "OSSAccessKeyId",
  "security-token",
  "x-oss-signature",
  "x-oss-credential",
  "x-oss-date",
  "x-oss-expires",
  "x-oss-signature-version",
  // Tencent COS
  "q-sign-algorithm",
  "q-ak",
  "q-sign-time",
  "q-key-time",
  "q-header-list",
  "q-url-param-list",
  "q-signature",
  "x-cos-security-token",
  // containerd's mirror namespace parameter
  "ns",
];

export function parseSourceUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(raw)}: not an absolute URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new DamselflyError(
      "DF_ERR_INVALID_URL",
      `invalid URL ${JSON.stringify(raw)}: unsupported scheme ${url.protocol.replace(/:$/, "")} (supported: http, https, s3, hf)`,
    );
  }
  if (url.hostname === "") throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(raw)}: no host`);
  return url;
}

// Removes signature parameters (defaults plus the user's own) from a URL.
export function filterUrl(raw: string, extraFiltered: readonly string[] = []): string {
  const url = parseSourceUrl(raw);
  const drop = new Set([...DEFAULT_FILTERED_QUERY_PARAMS, ...extraFiltered].map((p) => p.toLowerCase()));
  const kept = new URLSearchParams();
  for (const [k, v] of url.searchParams) if (!drop.has(k.toLowerCase())) kept.append(k, v);
  url.search = kept.toString();
  url.hash = "";
  return url.toString();
}

export interface TaskIdInput {
  url: string;
  tag?: string;
  application?: string;
  filteredQueryParams?: readonly string[];
  // Only a user-chosen piece length is part of the ID: the automatic one is
  // derived from the content length, which a peer does not know before it
  // joins the swarm.
  pieceLength?: number;
  // Content-addressed task ("sha256:<hex>"): the digest and the URL's
  // registry (its origin) replace the URL.
  digest?: string;
}

// Other names of one registry: the same task whatever name reached it.
const REGISTRY_ALIASES: Readonly<Record<string, string>> = { "docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io" };

// The registry a content-addressed task belongs to: scheme, host and port
// of its URL. A blob is shared only among clients of the registry it was
// fetched from: a copy of a private registry's blob is never the task of a
// client who names another registry (one that redirects, or says yes to
// anyone), so such a client can neither read it from the store nor from the
// swarm; the registry's own access check (proxy/blob-access.ts) decides.
export function registryOf(rawUrl: string): string {
  let u: URL;
  try {
    u = new URL(rawUrl);
  } catch {
    return "";
  }
  const host = REGISTRY_ALIASES[u.host] ?? u.host;
  return `${u.protocol}//${host}`;
}

export function taskId(input: TaskIdInput): string {
  const h = createHash("sha256");
  if (input.digest) h.update(`digest=${input.digest.toLowerCase()}\0registry=${registryOf(input.url)}`);
  else h.update(filterUrl(input.url, input.filteredQueryParams ?? []));
  h.update("\0tag=");
  h.update(input.tag ?? "");
  h.update("\0application=");
  h.update(input.application ?? "");
  if (input.pieceLength) h.update(`\0pieceLength=${input.pieceLength}`);
  return h.digest("hex");
}

export const TASK_ID_RE = /^[0-9a-f]{64}$/;

export function isTaskId(s: string): boolean {
  return TASK_ID_RE.test(s);
}
