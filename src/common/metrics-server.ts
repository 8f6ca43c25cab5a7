import http from "node:http";
import https from "node:https";
import { collectDefaultMetrics, type Registry } from "prom-client";
import type { HostPort } from "./address.js";
import { closeServer, listenOn, refuseBody } from "./http-server.js";
import { Health, isHealthPath } from "./health.js";
import type { Logger } from "./logger.js";
import { parseHostPort } from "./address.js";
import { checkBind } from "./tls/bind-policy.js";
import type { TlsIdentity } from "./tls/identity.js";
import { identityOfSocket } from "./tls/roles.js";

export const METRICS_PATH = "/metrics";
export const METRICS_PREFIX = "damselfly_";

export interface MetricsServerOptions {
  // "HOST:PORT" (--metrics-listen).
  listen: string;
  registry: Registry;
  health: Health;
  logger: Logger;
  // HTTPS with the component's certificate: /metrics only to a client
  // certificate of the cluster CA (any role; Prometheus gets one), probes
  // to anyone (a kubelet probe shows no certificate).
  tls?: TlsIdentity;
  // Without tls: a non-loopback address needs --insecure.
  insecure?: boolean;
}

// The --metrics-listen server: GET /metrics (Prometheus text format),
// /healthz and /readyz; 404 for any other path, 405 for other methods.
// Its own port, so a scraper or a prober never waits behind data-plane
// traffic and can be firewalled apart from it.
export class MetricsServer {
  address: HostPort = { host: "", port: 0 };
  private server: http.Server | https.Server | undefined;

  constructor(private readonly o: MetricsServerOptions) {}

  async start(): Promise<void> {
    // Process metrics (CPU, memory, event-loop lag, GC, handles) are collected
    // only where someone can scrape them.
    collectDefaultMetrics({ register: this.o.registry, prefix: METRICS_PREFIX });
    const tls = this.o.tls;
    checkBind("metrics", parseHostPort(this.o.listen, "metrics listen address").host, tls !== undefined, this.o.insecure === true, this.o.logger);
    const limits = { requestTimeout: 30_000, headersTimeout: 10_000 };
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((err: unknown) => {
        this.o.logger.warn({ err: (err as Error).message }, "metrics: request failed");
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end("internal error\n");
      });
    };
    const server = tls ? https.createServer({ ...limits, ...tls.serverOptions(false) }, onRequest) : http.createServer(limits, onRequest);
    if (tls) tls.attach(server as https.Server, false);
    this.address = await listenOn(server, this.o.listen, "metrics listen address");
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await closeServer(s);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const raw = req.url ?? "";
    const q = raw.indexOf("?");
    const path = q < 0 ? raw : raw.slice(0, q);
    if (refuseBody(req, res, "the metrics port")) return;
    // The operator's monitoring port; under TLS only a cluster certificate sees why not.
    if (isHealthPath(path)) return this.o.health.answer(path, req.method, res, { detail: !this.o.tls || identityOfSocket(req.socket) !== undefined });
    if (path !== METRICS_PATH) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics, /healthz or /readyz\n");
      return;
    }
    if (this.o.tls && !identityOfSocket(req.socket)) {
      res.writeHead(403, { "content-type": "text/plain" }).end("forbidden: /metrics needs a client certificate of the cluster CA\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { "content-type": "text/plain", allow: "GET, HEAD" }).end("method not allowed\n");
      return;
    }
    const text = await this.o.registry.metrics();
    res.writeHead(200, { "content-type": this.o.registry.contentType, "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : text);
  }
}
