// Docker Engine: daemon.json gains the daemon as a registry mirror (Docker
// Hub pulls) and the engine gets it as its HTTP(S) proxy (every other
// registry); every other setting in the file is kept as it was.
import { DamselflyError } from "../../common/errors.js";
import type { ProxyUrl } from "./endpoints.js";
import { dockerdVersion, proxyDropIn, supportsProxies, validateDaemonJson } from "./dockerd.js";
import { readExisting, type FileChange } from "./files.js";

export const DEFAULT_DAEMON_JSON = "/etc/docker/daemon.json";

const DEFAULT_NO_PROXY = "localhost,127.0.0.1";

function invalid(file: string, why: string): DamselflyError {
  return new DamselflyError("DF_ERR_CONFIG", `${file}: ${why}; fix or move the file, then run damselfly init docker again (it was not changed)`);
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// Docker stores mirrors with a trailing slash; "http://h:1" and
// "http://h:1/" are the same mirror.
function sameMirror(a: string, b: string): boolean {
  return a.replace(/\/+$/, "").toLowerCase() === b.replace(/\/+$/, "").toLowerCase();
}

function parse(file: string, existing: string | undefined): Json {
  let doc: unknown = {};
  if (existing !== undefined && existing.trim() !== "") {
    try {
      doc = JSON.parse(existing);
    } catch (err) {
      throw invalid(file, `not valid JSON (${(err as Error).message})`);
    }
  }
  if (!isObject(doc)) throw invalid(file, "expected a JSON object at the top level");
  return doc;
}

// The engine's no-proxy list: the file's, else loopback.
export function noProxyOf(file: string, existing: string | undefined): string {
  const proxies = parse(file, existing).proxies;
  const v = isObject(proxies) ? proxies["no-proxy"] : undefined;
  return typeof v === "string" ? v : DEFAULT_NO_PROXY;
}

// existing: the file's text (undefined: no file). Returns the new text.
// Without `proxies` (an engine before 23.0, which refuses to start with the
// key): the key is left out, and one an earlier run wrote is removed.
export function mergeDaemonJson(file: string, existing: string | undefined, proxy: ProxyUrl, o: { proxies: boolean } = { proxies: true }): string {
  const doc = parse(file, existing);

  const mirrors = doc["registry-mirrors"] ?? [];
  if (!Array.isArray(mirrors) || !mirrors.every((m) => typeof m === "string")) throw invalid(file, `"registry-mirrors" is not a list of strings`);
  const proxies = doc.proxies ?? {};
  if (!isObject(proxies)) throw invalid(file, `"proxies" is not an object`);
  const noProxy = proxies["no-proxy"] ?? DEFAULT_NO_PROXY;
  if (typeof noProxy !== "string") throw invalid(file, `"proxies"."no-proxy" is not a string`);

  // First in the list: Docker tries mirrors in order, and the point is to
  // pull through Damselfly; an entry already present keeps its place.
  const newMirrors = mirrors.some((m) => sameMirror(m, proxy.url)) ? mirrors : [proxy.url, ...mirrors];
  const merged: Json = { ...doc, "registry-mirrors": newMirrors };
  if (o.proxies) merged.proxies = { ...proxies, "http-proxy": proxy.url, "https-proxy": proxy.url, "no-proxy": noProxy };
  else delete merged.proxies;
  return JSON.stringify(merged, null, 2) + "\n";
}

export interface DockerInitOptions {
  daemonJson: string;
  dockerd: string;
  systemdDropIn: string;
}

// The files `init docker` writes, for the engine this host runs: "proxies"
// in daemon.json for Engine 23.0 and later, else a systemd drop-in; the new
// daemon.json is checked by the engine's own dockerd first when there is one.
export async function dockerChanges(o: DockerInitOptions, proxy: ProxyUrl): Promise<{ changes: FileChange[]; hint: string }> {
  const version = await dockerdVersion(o.dockerd);
  const proxies = version !== undefined && supportsProxies(version);
  const existing = await readExisting(o.daemonJson);
  const content = mergeDaemonJson(o.daemonJson, existing, proxy, { proxies });
  if (version) await validateDaemonJson(o.dockerd, version, content);
  const changes: FileChange[] = [{ path: o.daemonJson, content }];
  if (proxies) return { changes, hint: "restart docker: systemctl restart docker\n" };
  changes.push({ path: o.systemdDropIn, content: proxyDropIn(proxy.url, noProxyOf(o.daemonJson, existing)) });
  const engine = version ? `Docker Engine ${version.text}` : `no dockerd found (${o.dockerd})`;
  return {
    changes,
    hint:
      "restart docker: systemctl daemon-reload && systemctl restart docker\n" +
      `(${engine}: the engine's proxy is set in ${o.systemdDropIn}, as "proxies" in daemon.json needs Docker Engine 23.0 or later)\n`,
  };
}
