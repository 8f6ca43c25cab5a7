// Every URL Damselfly writes down (task.json, `cache list`, logs, error
// messages, trace attributes) goes through this module, so a secret in a URL
// (a SAS signature, a token) is never kept or shown.

// Query parameters whose values are credentials or signatures, compared
// case-insensitively. Signature parameters that only vouch for a URL are
// also left out of the task ID (task-id.ts); these are the ones a stored or
// printed URL must not show.
export const SECRET_QUERY_PARAMS: readonly string[] = [
  // Azure Storage SAS
  "sig",
  // AWS S3 (SigV4, SigV2)
  "X-Amz-Signature",
  "X-Amz-Credential",
  "X-Amz-Security-Token",
  "Signature",
  "AWSAccessKeyId",
  // Google Cloud Storage
  "X-Goog-Signature",
  "X-Goog-Credential",
  "GoogleAccessId",
  // Alibaba OSS, Tencent COS
  "OSSAccessKeyId",
  "x-oss-signature",
  "x-oss-credential",
  "security-token",
  "q-ak",
  "q-signature",
  "x-cos-security-token",
  // Generic bearer tokens, API keys and passwords
  "token",
  "access_token",
  "id_token",
  "refresh_token",
  "auth",
  "api_key",
  "apikey",
  "key",
  "password",
  "secret",
  "client_secret",
];

export const REDACTED = "REDACTED";

const SECRET = new Set(SECRET_QUERY_PARAMS.map((p) => p.toLowerCase()));

export function isSecretParam(name: string): boolean {
  return SECRET.has(name.toLowerCase());
}

// The URL with every secret query value and any password replaced by
// REDACTED (the names stay: the reader sees that the URL was signed); other
// parameters and the fragment-free rest as they were. For task.json and
// `cache list`. "" for what is not a URL.
export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "";
  }
  if (url.password) url.password = REDACTED;
  url.hash = "";
  if (![...url.searchParams.keys()].some(isSecretParam)) return url.toString();
  const kept = new URLSearchParams();
  for (const [k, v] of url.searchParams) kept.append(k, isSecretParam(k) ? REDACTED : v);
  url.search = kept.toString();
  return url.toString();
}

// A stored URL fit to fetch again: the parameters redactUrl blanked are left
// out (the origin is asked without them, not with REDACTED).
export function withoutRedacted(raw: string): string {
  const url = new URL(raw);
  const kept = new URLSearchParams();
  for (const [k, v] of url.searchParams) if (!(isSecretParam(k) && v === REDACTED)) kept.append(k, v);
  url.search = kept.toString();
  return url.toString();
}

// For log lines and error messages: no query string at all (names of
// parameters nobody listed may still be secrets).
export function urlForMessages(url: URL): string {
  return url.search ? `${url.origin}${url.pathname}?…` : `${url.origin}${url.pathname}`;
}
