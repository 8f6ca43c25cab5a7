import { readFile } from "node:fs/promises";
import { Agent, type Dispatcher } from "undici";
import { DamselflyError } from "../errors.js";
import { readTextCapped } from "../streams.js";
import type { KubeAccess } from "./in-cluster.js";
import { parseNode, parsePodList, statusMessage, type KubeNode, type KubePod } from "./kube-objects.js";

// The few Kubernetes API calls Damselfly makes (GET/PATCH a node, LIST pods),
// over undici with the cluster CA and the service account's bearer token.
// Not @kubernetes/client-node: it brings ~15 dependencies (openid-client, ws,
// tar-fs, socks, js-yaml...) for three REST calls. Every answer is read up to
// a cap and parsed into the fields we use; anything else is an error with a
// DF_ERR_KUBE_* code. The token is never logged nor put in an error.

export interface KubeClientOptions extends Pick<KubeAccess, "server" | "tokenFile" | "caFile"> {
  timeoutMs?: number;
  // Largest answer read (a node object, a page of pods).
  maxBodyBytes?: number;
  // Tests: a dispatcher of their own.
  dispatcher?: Dispatcher;
}

export type PatchType = "merge" | "json";
const PATCH_CONTENT_TYPE: Record<PatchType, string> = {
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
};

export interface ListPodsOptions {
  labelSelector?: string;
  fieldSelector?: string;
  // Page size (the API server's `limit`).
  limit?: number;
  // Stop after this many pods; `truncated` says so.
  maxItems: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BODY = 16 * 1024 * 1024;
// A token or CA file bigger than this is not one.
const MAX_CREDENTIAL_FILE = 256 * 1024;
// Pages followed at most: a server that keeps answering `continue` must not loop us forever.
const MAX_PAGES = 10_000;

export class KubeClient {
  private agent: Agent | undefined;
  private readonly timeoutMs: number;
  private readonly maxBody: number;

  constructor(private readonly o: KubeClientOptions) {
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxBody = o.maxBodyBytes ?? DEFAULT_MAX_BODY;
  }

  getNode(name: string, signal?: AbortSignal): Promise<KubeNode> {
    return this.call("GET", `/api/v1/nodes/${encodeURIComponent(name)}`, undefined, signal).then(parseNode);
  }

  // merge: RFC 7386 (labels are a map: a key is set or, with null, removed);
  // json: RFC 6902 (a `test` op makes a list edit conditional).
  patchNode(name: string, patch: unknown, type: PatchType, signal?: AbortSignal): Promise<KubeNode> {
    const body = { contentType: PATCH_CONTENT_TYPE[type], text: JSON.stringify(patch) };
    return this.call("PATCH", `/api/v1/nodes/${encodeURIComponent(name)}`, body, signal).then(parseNode);
  }

  // Every pod of a namespace matching the selectors, page by page.
  async listPods(namespace: string, o: ListPodsOptions, signal?: AbortSignal): Promise<{ pods: KubePod[]; truncated: boolean }> {
    const pods: KubePod[] = [];
    let next = "";
    for (let page = 0; page < MAX_PAGES; page++) {
      const q = new URLSearchParams();
      if (o.labelSelector) q.set("labelSelector", o.labelSelector);
      if (o.fieldSelector) q.set("fieldSelector", o.fieldSelector);
      q.set("limit", String(o.limit ?? 500));
      if (next) q.set("continue", next);
      const list = parsePodList(await this.call("GET", `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?${q}`, undefined, signal));
      for (const p of list.items) {
        if (pods.length >= o.maxItems) return { pods, truncated: true };
        pods.push(p);
      }
      if (!list.continue) return { pods, truncated: false };
      next = list.continue;
    }
    return { pods, truncated: true };
  }

  async close(): Promise<void> {
    const a = this.agent;
    this.agent = undefined;
    await a?.close();
  }

  private async dispatcher(): Promise<Dispatcher> {
    if (this.o.dispatcher) return this.o.dispatcher;
    if (!this.agent) {
      const ca = await readCredential(this.o.caFile, "CA");
      // TLS verification stays on: the API server's certificate must chain to
      // the cluster CA and name the address we dial.
      this.agent = new Agent({ connect: { ca, rejectUnauthorized: true }, connections: 4, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs });
    }
    return this.agent;
  }

  private async call(method: "GET" | "PATCH", path: string, body: { contentType: string; text: string } | undefined, signal?: AbortSignal): Promise<unknown> {
    const token = (await readCredential(this.o.tokenFile, "token")).trim();
    const dispatcher = await this.dispatcher();
    const headers: Record<string, string> = { accept: "application/json", authorization: `Bearer ${token}`, "user-agent": "damselfly" };
    if (body) headers["content-type"] = body.contentType;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Dispatcher.ResponseData;
    try {
      res = await dispatcher.request({
        origin: this.o.server,
        path,
        method,
        headers,
        ...(body ? { body: body.text } : {}),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      throw new DamselflyError("DF_ERR_KUBE_UNAVAILABLE", `${method} ${pathOnly(path)}: ${DamselflyError.from(err).message}`, { cause: err, temporary: true });
    }
    const text = await readTextCapped(res.body, this.maxBody, `Kubernetes API answer to ${method} ${pathOnly(path)}`).catch((err: unknown) => {
      res.body.destroy();
      throw new DamselflyError("DF_ERR_KUBE_RESPONSE", DamselflyError.from(err).message, { cause: err });
    });
    const json = parseJson(text);
    if (res.statusCode >= 200 && res.statusCode < 300) {
      if (json === undefined) throw new DamselflyError("DF_ERR_KUBE_RESPONSE", `${method} ${pathOnly(path)}: the answer is not JSON`);
      return json;
    }
    throw statusError(res.statusCode, `${method} ${pathOnly(path)}`, statusMessage(json));
  }
}

function statusError(status: number, what: string, message: string | undefined): DamselflyError {
  const detail = `${what}: HTTP ${status}${message ? `: ${message}` : ""}`;
  if (status === 401) return new DamselflyError("DF_ERR_KUBE_AUTH", `${detail} (the service account token was rejected)`, { sourceStatus: status });
  if (status === 403)
    return new DamselflyError("DF_ERR_KUBE_AUTH", `${detail} (RBAC does not allow it: see deploy/kubernetes/base/rbac.yaml)`, { sourceStatus: status });
  if (status === 429 || status >= 500) return new DamselflyError("DF_ERR_KUBE_UNAVAILABLE", detail, { sourceStatus: status, temporary: true });
  return new DamselflyError("DF_ERR_KUBE_REJECTED", detail, { sourceStatus: status });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// Errors name the resource, never the query (selectors are config, but keep it short).
function pathOnly(path: string): string {
  return path.split("?")[0]!.slice(0, 200);
}

async function readCredential(file: string, what: string): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (err) {
    throw new DamselflyError("DF_ERR_KUBE_CONFIG", `service account ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (data.length === 0 || data.length > MAX_CREDENTIAL_FILE) {
    throw new DamselflyError("DF_ERR_KUBE_CONFIG", `service account ${what} ${file} is empty or larger than ${MAX_CREDENTIAL_FILE} bytes`);
  }
  return data.toString("utf8");
}
