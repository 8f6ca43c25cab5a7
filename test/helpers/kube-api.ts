// A Kubernetes API server for tests, speaking enough of the real protocol for
// kubectl (checked against it in test/unit/kube-api-fixture.test.ts) and for
// our client: HTTPS with a test CA, bearer tokens (401 Status otherwise),
// legacy discovery (/api, /api/v1, /apis, /version), nodes GET/LIST/PATCH
// (merge-patch+json, json-patch+json, strategic-merge-patch+json as far as
// labels and taints need), pods GET and LIST with labelSelector,
// fieldSelector, limit and continue. Listens on 127.0.0.1 only.
import https from "node:https";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import type { IncomingMessage, ServerResponse } from "node:http";
import { makePki } from "./pki.js";

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are untyped JSON here
type Obj = any;

export interface KubeApiRequest {
  method: string;
  path: string;
  contentType: string | undefined;
  auth: boolean;
}

export interface KubeApi {
  url: string;
  port: number;
  caFile: string;
  // A service account directory (token, ca.crt, namespace) for our client.
  saDir: string;
  tokens: Set<string>;
  nodes: Map<string, Obj>;
  // namespace/name -> pod
  pods: Map<string, Obj>;
  requests: KubeApiRequest[];
  // Every answer to an authenticated resource call becomes this, from now on.
  hostile: "huge" | "garbage" | undefined;
  // Writes saDir's token, ca.crt and namespace (token defaults to a valid one).
  writeServiceAccount(token?: string, namespace?: string): void;
  // KUBERNETES_SERVICE_HOST/PORT pointing here.
  env: Record<string, string>;
  addNode(name: string, o?: { labels?: Record<string, string>; taints?: Obj[] }): Obj;
  addPod(namespace: string, name: string, nodeName: string, labels: Record<string, string>): Obj;
  close(): Promise<void>;
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  send(res, code, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify(body));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

// RFC 7386; with `strategic`, $-directives are dropped (labels are maps and
// taints an atomic list, so the rest is the same for them).
export function mergePatch(target: Obj, patch: Obj, strategic = false): Obj {
  if (!isObject(patch)) return patch;
  const out: Obj = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (strategic && k.startsWith("$")) continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v, strategic);
  }
  return out;
}

// RFC 6902: add, remove, replace, test (what we and kubectl send).
export function jsonPatch(doc: Obj, ops: Obj[]): Obj {
  const root = structuredClone(doc);
  for (const op of ops) {
    const parts = String(op.path)
      .split("/")
      .slice(1)
      .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = parts.pop()!;
    let parent: Obj = root;
    for (const p of parts) {
      parent = parent?.[Array.isArray(parent) ? Number(p) : p];
      if (parent === undefined) throw new Error(`path ${op.path} does not exist`);
    }
    const key = Array.isArray(parent) ? (last === "-" ? parent.length : Number(last)) : last;
    if (op.op === "test") {
      if (JSON.stringify(parent[key]) !== JSON.stringify(op.value)) throw new Error(`test of ${op.path} failed`);
    } else if (op.op === "remove") {
      if (!(key in parent)) throw new Error(`path ${op.path} does not exist`);
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else if (op.op === "add" || op.op === "replace") {
      if (Array.isArray(parent) && op.op === "add") parent.splice(key as number, 0, op.value);
      else parent[key] = op.value;
    } else throw new Error(`op ${op.op} not supported`);
  }
  return root;
}

// Equality-based and set-less selectors: k=v, k==v, k!=v, k, !k (ANDed).
export function matchLabels(selector: string, labels: Record<string, string> = {}): boolean {
  for (const term of selector.split(",").filter(Boolean)) {
    const t = term.trim();
    let m: RegExpExecArray | null;
    if ((m = /^(.+?)!=(.*)$/.exec(t))) {
      if (labels[m[1]!] === m[2]) return false;
    } else if ((m = /^(.+?)==?(.*)$/.exec(t))) {
      if (labels[m[1]!] !== m[2]) return false;
    } else if (t.startsWith("!")) {
      if (t.slice(1) in labels) return false;
    } else if (!(t in labels)) return false;
  }
  return true;
}

function matchFields(selector: string, pod: Obj): boolean {
  const fields: Record<string, string> = {
    "metadata.name": pod.metadata.name,
    "metadata.namespace": pod.metadata.namespace,
    "spec.nodeName": pod.spec.nodeName ?? "",
    "status.phase": pod.status?.phase ?? "",
  };
  for (const term of selector.split(",").filter(Boolean)) {
    const m = /^([a-zA-Z.]+)(!=|==|=)(.*)$/.exec(term.trim());
    if (!m || !(m[1]! in fields)) throw new Error(`field label not supported: ${term}`);
    if ((fields[m[1]!] === m[3]) !== (m[2] !== "!=")) return false;
  }
  return true;
}

const DISCOVERY: Record<string, Obj> = {
  "/api": { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "127.0.0.1:443" }] },
  "/apis": { kind: "APIGroupList", apiVersion: "v1", groups: [] },
  "/version": { major: "1", minor: "32", gitVersion: "v1.32.0-damselfly-fixture", platform: "linux/amd64" },
  "/api/v1": {
    kind: "APIResourceList",
    groupVersion: "v1",
    resources: [
      { name: "nodes", singularName: "node", namespaced: false, kind: "Node", verbs: ["get", "list", "patch"], shortNames: ["no"] },
      { name: "pods", singularName: "pod", namespaced: true, kind: "Pod", verbs: ["get", "list"], shortNames: ["po"] },
    ],
  },
};

export async function startKubeApi(dir: string): Promise<KubeApi> {
  const pki = await makePki(join(dir, "pki"));
  const cert = await pki.issue("scheduler", "kube-apiserver", { ips: ["127.0.0.1"], dns: ["localhost", "kubernetes.default.svc"] });
  const saDir = join(dir, "serviceaccount");
  mkdirSync(saDir, { recursive: true });
  let rv = 1;
  const api: KubeApi = {
    url: "",
    port: 0,
    caFile: cert.ca,
    saDir,
    tokens: new Set(["fixture-token"]),
    nodes: new Map(),
    pods: new Map(),
    requests: [],
    hostile: undefined,
    env: {},
    writeServiceAccount(token = "fixture-token", namespace = "damselfly") {
      writeFileSync(join(saDir, "token"), token);
      writeFileSync(join(saDir, "ca.crt"), readFileSync(cert.ca));
      writeFileSync(join(saDir, "namespace"), namespace);
    },
    addNode(name, o = {}) {
      const node = {
        kind: "Node",
        apiVersion: "v1",
        metadata: { name, uid: `uid-${name}`, resourceVersion: String(rv++), labels: { "kubernetes.io/hostname": name, ...o.labels } },
        spec: o.taints ? { taints: o.taints } : {},
        status: { conditions: [{ type: "Ready", status: "True" }] },
      };
      api.nodes.set(name, node);
      return node;
    },
    addPod(namespace, name, nodeName, labels) {
      const pod = {
        kind: "Pod",
        apiVersion: "v1",
        metadata: { name, namespace, uid: `uid-${name}`, resourceVersion: String(rv++), labels },
        spec: { nodeName, containers: [{ name: "daemon", image: "damselfly:dev" }] },
        status: { phase: "Running" },
      };
      api.pods.set(`${namespace}/${name}`, pod);
      return pod;
    },
    close: async () => undefined,
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const auth = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    const ok = auth !== null && api.tokens.has(auth[1]!);
    api.requests.push({ method: req.method ?? "", path: url.pathname, contentType: req.headers["content-type"], auth: ok });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > 1 << 20) return status(res, 413, "RequestEntityTooLarge", "request body too large");
      chunks.push(c);
    }
    if (!ok) return status(res, 401, "Unauthorized", "Unauthorized");
    if (req.method === "GET" && DISCOVERY[url.pathname]) return send(res, 200, DISCOVERY[url.pathname]);
    if (api.hostile === "garbage") return void res.writeHead(200, { "content-type": "application/json" }).end('{"kind":"Node","metadata":{"name":');
    if (api.hostile === "huge") return hugeAnswer(res);
    const body = Buffer.concat(chunks).toString("utf8");
    return resource(req.method ?? "", url, req.headers["content-type"] ?? "", body, res);
  };

  const resource = (method: string, url: URL, contentType: string, body: string, res: ServerResponse): void => {
    let m: RegExpExecArray | null;
    if ((m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(url.pathname))) {
      const node = api.nodes.get(decodeURIComponent(m[1]!));
      if (!node) return status(res, 404, "NotFound", `nodes "${m[1]}" not found`);
      if (method === "GET") return send(res, 200, node);
      if (method === "PATCH") return patchNode(node, contentType, body, res);
      return status(res, 405, "MethodNotAllowed", "method not allowed");
    }
    if (url.pathname === "/api/v1/nodes" && method === "GET") return list(res, "NodeList", [...api.nodes.values()], url, () => true);
    if ((m = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?$/.exec(url.pathname)) && method === "GET") {
      const ns = decodeURIComponent(m[1]!);
      if (m[2]) {
        const pod = api.pods.get(`${ns}/${decodeURIComponent(m[2])}`);
        return pod ? send(res, 200, pod) : status(res, 404, "NotFound", `pods "${m[2]}" not found`);
      }
      const pods = [...api.pods.values()].filter((p) => p.metadata.namespace === ns);
      const fs = url.searchParams.get("fieldSelector") ?? "";
      try {
        return list(res, "PodList", pods, url, (p) => matchFields(fs, p));
      } catch (err) {
        return status(res, 400, "BadRequest", (err as Error).message);
      }
    }
    return status(res, 404, "NotFound", "the server could not find the requested resource");
  };

  const patchNode = (node: Obj, contentType: string, body: string, res: ServerResponse): void => {
    let patch: Obj;
    try {
      patch = JSON.parse(body);
    } catch {
      return status(res, 400, "BadRequest", "the patch is not JSON");
    }
    const type = contentType.split(";")[0]!.trim();
    let next: Obj;
    try {
      if (type === "application/merge-patch+json") next = mergePatch(node, patch);
      else if (type === "application/strategic-merge-patch+json") next = mergePatch(node, patch, true);
      else if (type === "application/json-patch+json") next = jsonPatch(node, patch);
      else return status(res, 415, "UnsupportedMediaType", `the body of the request was in an unknown format: ${type}`);
    } catch (err) {
      return status(res, 422, "Invalid", (err as Error).message);
    }
    const rvPatched = next.metadata?.resourceVersion;
    if (rvPatched !== undefined && rvPatched !== node.metadata.resourceVersion) return status(res, 409, "Conflict", "the object has been modified");
    next.metadata = { ...next.metadata, name: node.metadata.name, resourceVersion: String(rv++) };
    api.nodes.set(node.metadata.name, next);
    send(res, 200, next);
  };

  const list = (res: ServerResponse, kind: string, all: Obj[], url: URL, fields: (o: Obj) => boolean): void => {
    const ls = url.searchParams.get("labelSelector") ?? "";
    const items = all.filter((o) => matchLabels(ls, o.metadata.labels) && fields(o)).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const start = Number(Buffer.from(url.searchParams.get("continue") ?? "", "base64url").toString() || "0");
    const limit = Number(url.searchParams.get("limit") ?? "0");
    const page = limit > 0 ? items.slice(start, start + limit) : items.slice(start);
    const end = start + page.length;
    const metadata: Obj = { resourceVersion: String(rv) };
    if (end < items.length) metadata.continue = Buffer.from(String(end)).toString("base64url");
    if (end < items.length) metadata.remainingItemCount = items.length - end;
    send(res, 200, { kind, apiVersion: "v1", metadata, items: page });
  };

  const server = https.createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (req, res) => {
    handle(req, res).catch((err) => status(res, 500, "InternalError", String(err)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  api.port = (server.address() as AddressInfo).port;
  api.url = `https://127.0.0.1:${api.port}`;
  api.env = { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(api.port) };
  api.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return api;
}

// 64 MiB of a JSON string, streamed with backpressure (a client that stops
// reading stops it).
function hugeAnswer(res: ServerResponse): void {
  res.writeHead(200, { "content-type": "application/json" });
  res.write('{"kind":"Node","metadata":{"name":"n","x":"');
  const chunk = Buffer.alloc(1 << 20, 0x61);
  let sent = 0;
  const more = (): void => {
    while (sent < 64) {
      sent++;
      if (!res.write(chunk)) return void res.once("drain", more);
    }
    res.end('"}}');
  };
  res.on("close", () => (sent = 64));
  more();
}
