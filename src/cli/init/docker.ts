// Docker Engine: daemon.json gains the daemon as a registry mirror (Docker
// Hub pulls) and as the engine's HTTP(S) proxy (every other registry); every
// other setting in the file is kept as it was.
import { DamselflyError } from "../../common/errors.js";
import type { ProxyUrl } from "./endpoints.js";

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

// existing: the file's text (undefined: no file). Returns the new text.
export function mergeDaemonJson(file: string, existing: string | undefined, proxy: ProxyUrl): string {
  let doc: unknown = {};
  if (existing !== undefined && existing.trim() !== "") {
    try {
      doc = JSON.parse(existing);
    } catch (err) {
      throw invalid(file, `not valid JSON (${(err as Error).message})`);
    }
  }
  if (!isObject(doc)) throw invalid(file, "expected a JSON object at the top level");

  const mirrors = doc["registry-mirrors"] ?? [];
  if (!Array.isArray(mirrors) || !mirrors.every((m) => typeof m === "string")) throw invalid(file, `"registry-mirrors" is not a list of strings`);
  const proxies = doc.proxies ?? {};
  if (!isObject(proxies)) throw invalid(file, `"proxies" is not an object`);
  const noProxy = proxies["no-proxy"] ?? DEFAULT_NO_PROXY;
  if (typeof noProxy !== "string") throw invalid(file, `"proxies"."no-proxy" is not a string`);

  // First in the list: Docker tries mirrors in order, and the point is to
  // pull through Damselfly; an entry already present keeps its place.
  const newMirrors = mirrors.some((m) => sameMirror(m, proxy.url)) ? mirrors : [proxy.url, ...mirrors];
  const merged: Json = {
    ...doc,
    "registry-mirrors": newMirrors,
    proxies: {
      ...proxies,
      "http-proxy": proxy.url,
      "https-proxy": proxy.url,
      "no-proxy": noProxy,
    },
  };
  return JSON.stringify(merged, null, 2) + "\n";
}

export const DOCKER_HINT = 'restart docker: systemctl restart docker\n(the "proxies" key needs Docker Engine 23.0 or later)\n';
