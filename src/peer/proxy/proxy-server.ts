import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Dispatcher } from "undici";
import { parseHostPort, type HostPort } from "../../common/address.js";
import { isLoopbackHost } from "../../common/address.js";
import { DamselflyError } from "../../common/errors.js";
import { answerAndClose, bodyUnread, closeServer, listenOn, refuseBody } from "../../common/http-server.js";
import { parseBytes } from "../../common/config.js";
import type { Logger } from "../../common/logger.js";
import { SpanKind, spanUrl, startSpan, traceOfHeaders, type Span } from "../../common/trace.js";
import type { DownloadManager } from "../download-manager.js";
import type { HttpSource } from "../source/http-source.js";
import { BlobAccess } from "./blob-access.js";
import { forward } from "./forward.js";
import { NOT_SHARED_WITH_ORIGIN, upstreamRequestHeaders } from "./headers.js";
import { downloadOf, serveFromP2P } from "./p2p-response.js";
import { parseRange, type ByteRangeSpec } from "./range.js";
import { blobOfPath, REGISTRY_HEADER, routeMirrorRequest } from "./registry-route.js";
import { sendError } from "./respond.js";
import { absoluteTarget, tunnelTarget } from "./request-target.js";
import { badRequest, ConnectHandler } from "./connect-handler.js";
import { ProxyPolicy } from "./proxy-policy.js";
import type { CertificateAuthority } from "./ca.js";
import type { Health } from "../../common/health.js";
import { isHealthPath } from "../../common/health.js";
import type { DaemonMetrics, ProxyKind, ProxyOutcome } from "../metrics.js";

// How one request was classified and served, for damselfly_proxy_requests_total.
interface ProxyRecord {
  kind: ProxyKind;
  outcome: ProxyOutcome;
}

const MANIFEST_PATH = /^\/v2\/.+\/manifests\/[^/]+$/;

export interface ProxyOptions {
  listen: string;
  logger: Logger;
  tasks: DownloadManager;
  source: HttpSource;
  defaultRegistry: string;
  plainHttpRegistries: readonly string[];
  rules: readonly string[];
  intercept: readonly string[];
  ca: CertificateAuthority | undefined;
  authTtlMs: number;
  minP2pSize: number;
  stallTimeoutMs: number;
  sourceTimeoutMs: number;
  prefetch: boolean;
  metrics?: DaemonMetrics;
  // /healthz and /readyz on the proxy port too.
  health?: Health;
  // True while the daemon drains for exit: blobs are fetched straight from
  // the origin instead of starting P2P downloads that would be cut off.
  shuttingDown?: () => boolean;
  // --insecure: the proxy may listen on a non-loopback address.
  insecure?: boolean;
  // What it relays (proxy.connectPorts, proxy.ports, proxy.allowLocal; see
  // ProxyPolicy).
  policy: { connectPorts: readonly string[]; ports: readonly string[]; allowLocal: readonly string[] };
}

// The daemon's registry mirror and HTTP(S) proxy, on one port:
// - origin-form /v2/... requests: registry mirror (containerd hosts.toml,
//   registries.conf mirrors); blob GETs go through P2P keyed by digest;
// - absolute-form requests: HTTP proxy (HTTP_PROXY, Docker's proxies); URLs
//   matching the rules go through P2P;
// - CONNECT: tunnelled untouched, or TLS-terminated for intercepted hosts so
//   their blob GETs can go through P2P too.
export class ProxyServer {
  address: HostPort = { host: "", port: 0 };
  private server: http.Server | undefined;
  private readonly rules: RegExp[];
  private readonly access: BlobAccess;
  private readonly connect: ConnectHandler;
  private readonly log: Logger;
  private readonly policy: ProxyPolicy;
  // Forwards and registry access checks: to where the policy lets them.
  private readonly dispatcher: Dispatcher;

  constructor(private readonly o: ProxyOptions) {
    this.log = o.logger;
    this.rules = o.rules.map((r) => new RegExp(r));
    this.policy = new ProxyPolicy({ ...o.policy, egress: o.source.egress, registries: [o.defaultRegistry, ...o.plainHttpRegistries] });
    this.dispatcher = this.policy.agent(o.source.options);
    this.access = new BlobAccess({ dispatcher: this.dispatcher, ttlMs: o.authTtlMs, timeoutMs: o.sourceTimeoutMs });
    this.connect = new ConnectHandler({
      intercept: o.intercept.map((r) => new RegExp(r)),
      ca: o.ca,
      logger: this.log,
      policy: this.policy,
      onRequest: (req, res, origin) => this.dispatch(req, res, (rec) => this.intercepted(req, res, origin, rec)),
      onConnect: (kind, established) => o.metrics?.proxyRequest(kind, established ? "established" : "error"),
    });
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      const health = this.o.health;
      if (health && isHealthPath(req.url ?? "")) {
        if (refuseBody(req, res, "a health check")) return;
        health.answer(req.url!, req.method, res).catch((err) => sendError(res, err));
        return;
      }
      this.dispatch(req, res, (rec) => this.route(req, res, rec));
    });
    server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => this.connect.handle(req, socket, head));
    server.on("clientError", (_err, socket) => badRequest(socket));
    checkProxyBind(this.o.listen, this.o.insecure === true, this.log);
    this.address = await listenOn(server, this.o.listen, "proxy listen address");
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.connect.close();
    if (s) await closeServer(s);
    await this.dispatcher.destroy();
  }

  private dispatch(req: IncomingMessage, res: ServerResponse, work: (rec: ProxyRecord) => Promise<void>): void {
    const rec: ProxyRecord = { kind: "other", outcome: "forwarded" };
    const metrics = this.o.metrics;
    if (metrics) res.once("close", () => metrics.proxyRequest(rec.kind, rec.outcome === "error" || res.writableFinished ? rec.outcome : "aborted"));
    // A synchronous throw in `work` (before its first await) fails this
    // request like a rejection: nothing may escape the request listener,
    // where it would be an uncaught exception that ends the daemon.
    new Promise<void>((resolve) => resolve(work(rec))).catch((err) => {
      rec.outcome = "error";
      const e = DamselflyError.from(err);
      this.log.warn({ method: req.method, code: e.code, err: e.message }, "proxy: request failed");
      if (bodyUnread(req)) answerAndClose(req, res, e);
      else sendError(res, e);
    });
  }

  private async route(req: IncomingMessage, res: ServerResponse, rec: ProxyRecord): Promise<void> {
    const raw = req.url ?? "/";
    if (refuseGetBody(req, res, raw === "/healthy")) return;
    if (raw === "/healthy") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (/^[a-z][a-z0-9+.-]*:/i.test(raw)) return this.viaProxy(req, res, absoluteTarget(raw), rec);
    if (raw === "/v2" || raw.startsWith("/v2/") || raw.startsWith("/v2?")) return this.viaMirror(req, res, rec);
    throw new DamselflyError("DF_ERR_INVALID_REQUEST", `not a registry API path (/v2/...) or a proxy request: ${JSON.stringify(raw.slice(0, 100))}`);
  }

  // A request decrypted from an intercepted tunnel (origin: https://host[:port]).
  private async intercepted(req: IncomingMessage, res: ServerResponse, origin: string, rec: ProxyRecord): Promise<void> {
    if (refuseGetBody(req, res)) return;
    return this.viaProxy(req, res, tunnelTarget(req.url ?? "", origin), rec);
  }

  private async viaMirror(req: IncomingMessage, res: ServerResponse, rec: ProxyRecord): Promise<void> {
    const route = routeMirrorRequest(req.url ?? "/", req.headers[REGISTRY_HEADER], {
      defaultRegistry: this.o.defaultRegistry,
      plainHttpRegistries: this.o.plainHttpRegistries,
    });
    const target = absoluteTarget(route.origin + route.pathAndQuery);
    this.policy.checkRequest(req.method ?? "", target);
    if (route.blob && req.method === "GET") {
      rec.kind = "blob";
      return this.viaP2P(req, res, target, route.blob.digest, rec);
    }
    if (MANIFEST_PATH.test(target.pathname)) rec.kind = "manifest";
    return forward(req, res, target.href, this.dispatcher);
  }

  private async viaProxy(req: IncomingMessage, res: ServerResponse, target: URL, rec: ProxyRecord): Promise<void> {
    this.policy.checkRequest(req.method ?? "", target);
    if (req.method === "GET" && this.rules.some((r) => r.test(target.href))) {
      rec.kind = "blob";
      return this.viaP2P(req, res, target, blobOfPath(target.pathname)?.digest, rec);
    }
    if (MANIFEST_PATH.test(target.pathname)) rec.kind = "manifest";
    return forward(req, res, target.href, this.dispatcher);
  }

  // Blobs (and any URL whose request carries credentials) are served from
  // the swarm only after the upstream confirmed that this client may read them.
  private async viaP2P(req: IncomingMessage, res: ServerResponse, target: URL, digest: string | undefined, rec: ProxyRecord): Promise<void> {
    // The swarm (or this daemon) fetches the URL with the daemon's own
    // egress policy: the proxy's is checked first.
    await this.policy.resolve(target.hostname, target.port ? Number(target.port) : target.protocol === "https:" ? 443 : 80);
    const range = parseRange(req.headers["range"]);
    if (!range.ok || this.o.shuttingDown?.()) return forward(req, res, target.href, this.dispatcher);
    // A proxied blob is a trace of its own, or joins the client's.
    const span = startSpan("proxy blob", {
      kind: SpanKind.SERVER,
      parent: traceOfHeaders(req.headers),
      attributes: { "url.full": spanUrl(target.href), "http.request.method": "GET", "damselfly.range": range.spec !== undefined },
    });
    try {
      await this.viaP2PTraced(req, res, target, digest, range.spec, span, rec);
    } catch (err) {
      span.setError(err);
      throw err;
    } finally {
      span.end();
    }
  }

  private async viaP2PTraced(
    req: IncomingMessage,
    res: ServerResponse,
    target: URL,
    digest: string | undefined,
    rangeSpec: ByteRangeSpec | undefined,
    span: Span,
    rec: ProxyRecord,
  ): Promise<void> {
    const rateLimit = rateLimitOf(req.headers[RATE_LIMIT_HEADER]);
    const range = { spec: rangeSpec };
    const headers = upstreamRequestHeaders(req.headers, NOT_SHARED_WITH_ORIGIN);
    let size = -1;
    if (digest || headers["authorization"] || headers["cookie"]) {
      const gone = new AbortController();
      const onClose = () => gone.abort();
      res.once("close", onClose);
      let answer;
      try {
        answer = await this.access.check(target.href, headers, gone.signal);
      } catch {
        // The upstream will say why (unreachable, timeout) through forward().
        return forward(req, res, target.href, this.dispatcher);
      } finally {
        res.off("close", onClose);
      }
      if (!answer.allowed) {
        span.setAttribute("damselfly.served_by", "origin (access check)");
        return forward(req, res, target.href, this.dispatcher);
      }
      size = answer.size;
      if (size >= 0 && size < this.o.minP2pSize) {
        span.setAttribute("damselfly.served_by", "origin (small)");
        return forward(req, res, target.href, this.dispatcher);
      }
    }
    const trailers = /(^|,)\s*trailers\s*(;|,|$)/i.test(String(req.headers["te"] ?? ""));
    const obj = { url: target.href, headers, digest, size, range: range.spec, trailers, rateLimit };
    if (range.spec) {
      // A range of an object this node neither holds nor is fetching: only
      // those bytes are fetched (lazy-loading snapshotters read small ranges
      // of big blobs); with prefetch on, the whole object follows in the
      // background so later ranges come from the store.
      const download = downloadOf(obj);
      if (!this.o.tasks.isActive(this.o.tasks.taskIdOf(download))) {
        if (this.o.prefetch)
          this.o.tasks
            .ensure(download, undefined, { background: true })
            .catch((err) => this.log.warn({ err: (err as Error).message }, "proxy: prefetch failed to start"));
        return forward(req, res, target.href, this.dispatcher);
      }
    }
    const result = await serveFromP2P(res, obj, {
      tasks: this.o.tasks,
      source: this.o.source,
      logger: this.log,
      stallTimeoutMs: this.o.stallTimeoutMs,
      span,
    });
    span.setAttribute("damselfly.served_by", result.declined ? "origin (P2P declined)" : "p2p");
    if (result.declined) {
      this.log.warn(
        { url: `${target.origin}${target.pathname}`, code: result.declined.code, err: result.declined.message },
        "proxy: P2P unavailable, forwarding to the origin",
      );
      return forward(req, res, target.href, this.dispatcher);
    }
    rec.outcome = "p2p";
    if (result.cache === "hit") this.o.metrics?.localBytes(result.bytes ?? 0);
  }
}

// GET and HEAD (and the proxy's own answers) are served by the proxy or the
// swarm, which read no request body: one is refused before it is read.
function refuseGetBody(req: IncomingMessage, res: ServerResponse, own = false): boolean {
  if (!own && req.method !== "GET" && req.method !== "HEAD") return false;
  return refuseBody(req, res, own ? "the proxy's own answer" : `a proxied ${req.method} request`);
}

// The proxy authenticates no one and fetches what it is asked for: on the
// network it would be an open proxy into whatever the daemon can reach, so
// only loopback unless the operator says --insecure (with or without TLS,
// which the proxy port does not speak).
function checkProxyBind(listen: string, insecure: boolean, log: Logger): void {
  const { host } = parseHostPort(listen, "proxy listen address");
  if (isLoopbackHost(host)) return;
  if (!insecure)
    throw new DamselflyError(
      "DF_ERR_INSECURE_BIND",
      `the proxy would listen on ${host}: it serves unauthenticated HTTP, so it listens on loopback only (127.0.0.1) unless --insecure is given`,
    );
  log.warn(
    { listener: "proxy", host },
    "INSECURE: the proxy listens on a non-loopback address (--insecure): anyone who reaches it can fetch through this daemon",
  );
}

// A client's own cap on the task its request downloads, e.g. "50MiB" (bytes
// per second). Never sent upstream (x-damselfly-* headers are dropped).
export const RATE_LIMIT_HEADER = "x-damselfly-rate-limit";

function rateLimitOf(v: string | string[] | undefined): number {
  if (v === undefined) return 0;
  try {
    if (Array.isArray(v)) throw new Error("given more than once");
    return parseBytes(v);
  } catch (err) {
    throw new DamselflyError("DF_ERR_INVALID_REQUEST", `${RATE_LIMIT_HEADER}: ${(err as Error).message}`);
  }
}
