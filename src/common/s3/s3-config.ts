// Where an s3:// URL points and with which credentials: the standard AWS
// sources (environment, shared credentials file and profile), flags first.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { isIP } from "node:net";
import { DamselflyError } from "../errors.js";

export interface S3Location {
  bucket: string;
  key: string;
}

export interface S3Options {
  // "" when unset: then AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS.
  endpoint: string;
  region: string;
  pathStyle: boolean;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export function isS3Url(raw: string): boolean {
  return /^s3:\/\//i.test(raw);
}

export function parseS3Url(raw: string): S3Location {
  const m = /^s3:\/\/([^/?#]+)\/([^?#]+)$/i.exec(raw);
  if (!m || m[2]!.endsWith("/")) {
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(raw)}: expected s3://BUCKET/KEY (one object; -r for a prefix)`);
  }
  return { bucket: m[1]!, key: m[2]! };
}

export interface S3Endpoint {
  // The object's URL without a signature.
  url: URL;
  region: string;
}

// Virtual-hosted style on AWS; path style when asked, or when the bucket
// cannot be a host name label (an IP endpoint, or dots under TLS).
export function objectUrl(loc: S3Location, opts: S3Options, env: NodeJS.ProcessEnv = process.env): S3Endpoint {
  const region = opts.region || env["AWS_REGION"] || env["AWS_DEFAULT_REGION"] || "us-east-1";
  const raw = opts.endpoint || env["AWS_ENDPOINT_URL_S3"] || env["AWS_ENDPOINT_URL"] || `https://s3.${region}.amazonaws.com`;
  let base: URL;
  try {
    base = new URL(raw);
  } catch {
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid S3 endpoint ${JSON.stringify(raw)}`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid S3 endpoint ${JSON.stringify(raw)}: not http(s)`);
  }
  const host = base.hostname.replace(/^\[|\]$/g, "");
  const pathStyle = opts.pathStyle || isIP(host) !== 0 || host === "localhost" || (base.protocol === "https:" && loc.bucket.includes("."));
  const keyPath = loc.key.split("/").map(encodeKeySegment).join("/");
  const prefix = base.pathname.replace(/\/+$/, "");
  const url = new URL(base.origin);
  if (pathStyle) url.pathname = `${prefix}/${loc.bucket}/${keyPath}`;
  else {
    url.hostname = `${loc.bucket}.${base.hostname}`;
    url.pathname = `${prefix}/${keyPath}`;
  }
  return { url, region };
}

// S3 encodes each key byte except the unreserved set (RFC 3986).
function encodeKeySegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function loadCredentials(env: NodeJS.ProcessEnv = process.env): S3Credentials {
  const found = findCredentials(env);
  if (found) return found;
  const file = credentialsFile(env);
  throw new DamselflyError(
    "DF_ERR_SOURCE_AUTH",
    `no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile ${env["AWS_PROFILE"] || "default"} in ${file}`,
  );
}

function credentialsFile(env: NodeJS.ProcessEnv): string {
  return env["AWS_SHARED_CREDENTIALS_FILE"] || join(homedir(), ".aws", "credentials");
}

// The standard AWS order: the environment, then the profile (AWS_PROFILE or
// "default") of the shared credentials file.
export function findCredentials(env: NodeJS.ProcessEnv = process.env): S3Credentials | undefined {
  const id = env["AWS_ACCESS_KEY_ID"];
  const secret = env["AWS_SECRET_ACCESS_KEY"];
  if (id && secret) return { accessKeyId: id, secretAccessKey: secret, ...(env["AWS_SESSION_TOKEN"] ? { sessionToken: env["AWS_SESSION_TOKEN"] } : {}) };
  let text: string;
  try {
    text = readFileSync(credentialsFile(env), "utf8");
  } catch {
    return undefined;
  }
  const section = iniSection(text, env["AWS_PROFILE"] || "default");
  const key = section["aws_access_key_id"];
  const sec = section["aws_secret_access_key"];
  if (!key || !sec) return undefined;
  const token = section["aws_session_token"];
  return { accessKeyId: key, secretAccessKey: sec, ...(token ? { sessionToken: token } : {}) };
}

// The keys of one [section] of an INI file (the AWS credentials format).
function iniSection(text: string, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  let inside = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const head = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (head) {
      inside = head[1] === name;
      continue;
    }
    const kv = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (inside && kv) out[kv[1]!.toLowerCase()] = kv[2]!;
  }
  return out;
}
