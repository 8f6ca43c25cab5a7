// Turns s3://BUCKET/KEY into what the swarm can fetch without the secret: the
// requesting node checks access with a signed HEAD (its own credentials
// decide, per request) and hands the daemon a short-lived presigned GET URL.
// The signature parameters are filtered out of the task ID (task-id.ts); the
// object's ETag (or version) is part of it, so an updated object is a new task.
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { request, type Dispatcher } from "undici";
import { DamselflyError } from "../errors.js";
import { urlForMessages } from "../url-redact.js";
import { loadCredentials, objectUrl, parseS3Url, type S3Credentials, type S3Options } from "./s3-config.js";

// S3 checks a signature when a request starts, not while the body flows; but
// a large object's back-to-source run may retry or resume ranges long after
// it began. So the URL lives an hour plus the time the object takes at a slow
// origin rate, within SigV4's seven-day ceiling (docs/operations/s3.md).
const PRESIGN_BASE_SECONDS = 3600;
const PRESIGN_SLOW_RATE = 8 * 1024 * 1024;
const PRESIGN_MAX_SECONDS = 7 * 24 * 3600;

export function presignSeconds(contentLength: number): number {
  return Math.min(PRESIGN_MAX_SECONDS, PRESIGN_BASE_SECONDS + Math.ceil(Math.max(0, contentLength) / PRESIGN_SLOW_RATE));
}
const HEAD_TIMEOUT_MS = 30_000;

export interface ResolvedS3 {
  // The presigned GET URL (http or https).
  url: string;
  // What identifies the object's content: its version, else its ETag.
  identity: string;
  contentLength: number;
}

interface SignTarget {
  method: "GET" | "HEAD";
  url: URL;
}

export function signer(region: string, credentials: S3Credentials): SignatureV4 {
  // S3 signs the path as sent: keys are encoded once, not twice.
  return new SignatureV4({ service: "s3", region, credentials, sha256: Sha256, uriEscapePath: false });
}

export function httpRequest(t: SignTarget): {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
} {
  return {
    method: t.method,
    protocol: t.url.protocol,
    hostname: t.url.hostname,
    ...(t.url.port ? { port: Number(t.url.port) } : {}),
    path: t.url.pathname,
    query: Object.fromEntries(t.url.searchParams),
    headers: { host: t.url.host },
  };
}

// `dispatcher`: the daemon's origin agent (its egress policy and trust).
export async function resolveS3(raw: string, opts: S3Options, env: NodeJS.ProcessEnv = process.env, dispatcher?: Dispatcher): Promise<ResolvedS3> {
  const loc = parseS3Url(raw);
  const { url, region } = objectUrl(loc, opts, env);
  const sig = signer(region, loadCredentials(env));
  const head = await signedHead(sig, url, raw, dispatcher);
  const get = httpRequest({ method: "GET", url });
  // A presigned S3 URL signs no payload, and the fetcher sends no such header.
  get.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
  const unsent = new Set(["x-amz-content-sha256"]);
  const presigned = await sig.presign(get, { expiresIn: presignSeconds(head.contentLength), unhoistableHeaders: unsent, unsignableHeaders: unsent });
  const out = new URL(url);
  for (const [k, v] of Object.entries(presigned.query ?? {})) out.searchParams.set(k, String(v));
  return { url: out.toString(), ...head };
}

async function signedHead(sig: SignatureV4, url: URL, raw: string, dispatcher: Dispatcher | undefined): Promise<Omit<ResolvedS3, "url">> {
  const req = httpRequest({ method: "HEAD", url });
  req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
  const signed = await sig.sign(req);
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, {
      method: "HEAD",
      headers: signed.headers as Record<string, string>,
      headersTimeout: HEAD_TIMEOUT_MS,
      ...(dispatcher ? { dispatcher } : {}),
    });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === "DF_ERR_EGRESS_DENIED") throw DamselflyError.from(err);
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `S3 endpoint unreachable for ${raw} (${urlForMessages(url)}): ${e.code ?? e.message}`, {
      cause: err,
      temporary: true,
    });
  }
  res.body.resume();
  const status = res.statusCode;
  if (status === 401 || status === 403) {
    throw new DamselflyError("DF_ERR_SOURCE_AUTH", `S3 refused the credentials for ${raw} (HTTP ${status}): check the access key, secret and region`, {
      sourceStatus: status,
    });
  }
  if (status === 404) throw new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", `${raw}: no such bucket or key (HTTP 404)`, { sourceStatus: status });
  if (status !== 200) {
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", `S3 returned HTTP ${status} for HEAD ${raw}`, { sourceStatus: status, temporary: status >= 500 });
  }
  const version = header(res.headers["x-amz-version-id"]);
  const etag = header(res.headers["etag"]);
  if (!etag && (!version || version === "null")) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `S3 sent no ETag for ${raw}`);
  return {
    identity: version && version !== "null" ? `version=${version}` : `etag=${etag}`,
    contentLength: Number(header(res.headers["content-length"]) || -1),
  };
}

function header(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

// The task tag of an S3 object: the user's tag plus the object's identity, so
// two versions of one key are two tasks and one version is one task however
// it was signed.
export function s3TaskTag(userTag: string, identity: string): string {
  return userTag === "" ? `s3:${identity}` : `${userTag}\ns3:${identity}`;
}
