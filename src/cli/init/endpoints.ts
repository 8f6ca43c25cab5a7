// The two addresses `damselfly init` writes into runtime configs: the local
// daemon's mirror/proxy URL and the real registries it stands in for.
// Parsed by hand rather than with URL: URL drops a default port ("https://r:443"
// becomes "https://r"), and the port is part of a registry's identity for
// containerd (certs.d/<host:port>) and must be spelled as the user gave it.
import { DamselflyError } from "../../common/errors.js";

export const DEFAULT_PROXY = "http://127.0.0.1:65001";

export interface ProxyUrl {
  scheme: "http" | "https";
  // host:port as it appears in the URL ("[::1]:65001" for IPv6).
  hostPort: string;
  // scheme://host:port, no trailing slash.
  url: string;
}

export interface Registry {
  // How the real registry is reached.
  scheme: "http" | "https";
  // Lower-cased host with its port if one was given: the name image
  // references use ("docker.io", "registry.example:5000").
  name: string;
  hasPort: boolean;
}

const HOST = String.raw`([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])`;
const PROXY_RE = new RegExp(String.raw`^(https?)://${HOST}:(\d{1,5})/?$`, "i");
const REGISTRY_RE = new RegExp(String.raw`^(?:(https?)://)?${HOST}(?::(\d{1,5}))?/?$`, "i");

function validPort(p: string): boolean {
  const n = Number(p);
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

export function parseProxyUrl(raw: string): ProxyUrl {
  const m = PROXY_RE.exec(raw.trim());
  if (!m || !validPort(m[3])) {
    throw new DamselflyError(
      "DF_ERR_INVALID_URL",
      `invalid --proxy ${JSON.stringify(raw)}: expected http(s)://HOST:PORT with an explicit port and no path, e.g. ${DEFAULT_PROXY}`,
    );
  }
  const scheme = m[1].toLowerCase() as ProxyUrl["scheme"];
  const hostPort = `${m[2].toLowerCase()}:${Number(m[3])}`;
  return { scheme, hostPort, url: `${scheme}://${hostPort}` };
}

export function parseRegistry(raw: string): Registry {
  const m = REGISTRY_RE.exec(raw.trim());
  if (!m || (m[3] !== undefined && !validPort(m[3]))) {
    throw new DamselflyError(
      "DF_ERR_USAGE",
      `invalid --registry ${JSON.stringify(raw)}: expected HOST[:PORT], http://HOST[:PORT] or https://HOST[:PORT] (no path)`,
    );
  }
  const host = m[2].toLowerCase();
  return {
    scheme: (m[1]?.toLowerCase() ?? "https") as Registry["scheme"],
    name: m[3] === undefined ? host : `${host}:${Number(m[3])}`,
    hasPort: m[3] !== undefined,
  };
}

// Parses every --registry value; the same registry twice is written once,
// but twice with different schemes is a contradiction.
export function parseRegistries(raws: readonly string[]): Registry[] {
  const byName = new Map<string, Registry>();
  for (const raw of raws) {
    const r = parseRegistry(raw);
    const seen = byName.get(r.name);
    if (seen && seen.scheme !== r.scheme) {
      throw new DamselflyError("DF_ERR_USAGE", `--registry ${r.name} given with both ${seen.scheme}:// and ${r.scheme}://`);
    }
    byName.set(r.name, r);
  }
  return [...byName.values()];
}

// commander argParser for repeatable, comma-separated --registry.
export function collectList(value: string, prev: string[] | undefined): string[] {
  return [
    ...(prev ?? []),
    ...value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  ];
}
