import { DamselflyError } from "../../common/errors.js";

// The URLs a proxied request is for, from its request-target (RFC 9112 3.2).
// URLs are built by concatenation and parsed whole, never by resolving the
// target as a relative reference against an origin: resolved, "//host/x"
// names another host, and "//" names none (new URL throws).

// An absolute-form target ("http://host/path"): the proxy request itself.
export function absoluteTarget(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid(raw, "malformed proxy request URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalid(raw, "only http and https URLs can be proxied");
  return url;
}

// A request decrypted from an intercepted tunnel to `origin`
// ("https://host[:port]"): origin-form "/path?query", or absolute-form naming
// that same origin. A path starting with "//" is refused: every URL parser
// down the line (redirects, registries' relative Locations) would read it as
// another host, and no registry or blob URL has one.
export function tunnelTarget(raw: string, origin: string): URL {
  const tunnel = new URL(origin).origin;
  if (/^[a-z][a-z0-9+.-]*:/i.test(raw)) {
    const url = absoluteTarget(raw);
    if (url.origin !== tunnel) throw invalid(raw, `the request names ${url.origin}, not the tunnel's ${tunnel}`);
    return url;
  }
  if (!raw.startsWith("/")) throw invalid(raw, "expected an origin-form request-target (/path)");
  if (raw.startsWith("//")) throw invalid(raw, "a request path may not start with //");
  return absoluteTarget(tunnel + raw);
}

function invalid(raw: string, why: string): DamselflyError {
  return new DamselflyError("DF_ERR_INVALID_REQUEST", `${why}: ${JSON.stringify(raw.slice(0, 100))}`);
}
