import { DamselflyError } from "../../common/errors.js";
import { isLoopbackHost } from "../../common/address.js";

export const REGISTRY_HEADER = "x-damselfly-registry";
// OCI distribution blob path: /v2/<name>/blobs/<algorithm>:<hex>.
const BLOB_PATH = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/;
// Docker reference rule: a first path component with a dot or "localhost"
// names a registry (used by registries.conf mirrors, which cannot send ns=).
const HOST_COMPONENT = /^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+)$/;

export interface RegistryRoute {
  // Upstream origin, e.g. https://registry-1.docker.io
  origin: string;
  // Upstream path and query (ns= removed).
  pathAndQuery: string;
  // Set for blob GET paths.
  blob?: { repository: string; digest: string };
}

export interface RouteOptions {
  defaultRegistry: string;
  plainHttpRegistries: readonly string[];
}

// docker.io is an alias: its API lives on registry-1.docker.io.
const ALIASES: Record<string, string> = { "docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io" };

// "host[:port]" or "http(s)://host[:port]" → origin URL string. Bare hosts
// use https unless loopback or listed as plain-http (as Docker treats them).
export function registryOrigin(raw: string, plainHttp: readonly string[]): string {
  const value = raw.trim();
  const withScheme = /^https?:\/\//i.test(value);
  let url: URL;
  try {
    url = new URL(withScheme ? value : `https://${value}`);
  } catch {
    throw new DamselflyError("DF_ERR_INVALID_REQUEST", `invalid registry ${JSON.stringify(raw.slice(0, 200))}`);
  }
  if (url.username || url.password || (url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    throw new DamselflyError(
      "DF_ERR_INVALID_REQUEST",
      `invalid registry ${JSON.stringify(raw.slice(0, 200))}: expected host[:port] or a scheme://host[:port] URL`,
    );
  }
  const host = ALIASES[url.host] ?? url.host;
  if (!withScheme && (isLoopbackHost(url.hostname) || plainHttp.includes(url.host) || plainHttp.includes(url.hostname))) return `http://${host}`;
  return `${url.protocol}//${host}`;
}

// Where a mirror request (origin-form /v2/... path) goes: the
// X-Damselfly-Registry header, else containerd's ns= parameter, else a
// registry named in the first path component, else the default registry.
export function routeMirrorRequest(rawUrl: string, header: string | string[] | undefined, o: RouteOptions): RegistryRoute {
  const u = new URL(rawUrl, "http://mirror.invalid");
  let path = u.pathname;
  const ns = u.searchParams.get("ns");
  u.searchParams.delete("ns");
  const query = u.searchParams.toString();
  let origin: string;
  const named = Array.isArray(header) ? header[0] : header;
  if (named) origin = registryOrigin(named, o.plainHttpRegistries);
  else if (ns) origin = registryOrigin(ns, o.plainHttpRegistries);
  else {
    const m = /^\/v2\/([^/]+)(\/.+)$/.exec(path);
    if (m && HOST_COMPONENT.test(m[1]!) && /^\/.+\/(manifests|blobs|tags)\//.test(m[2]!)) {
      origin = registryOrigin(m[1]!, o.plainHttpRegistries);
      path = `/v2${m[2]}`;
    } else origin = registryOrigin(o.defaultRegistry, o.plainHttpRegistries);
  }
  const route: RegistryRoute = { origin, pathAndQuery: path + (query ? `?${query}` : "") };
  const b = BLOB_PATH.exec(path);
  if (b) route.blob = { repository: b[1]!, digest: b[2]! };
  return route;
}

export function blobOfPath(pathname: string): { repository: string; digest: string } | undefined {
  const b = BLOB_PATH.exec(pathname);
  return b ? { repository: b[1]!, digest: b[2]! } : undefined;
}
