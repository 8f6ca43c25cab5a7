import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { ServiceImpl } from "@connectrpc/connect";
import { isHealthPath, type Health } from "../../common/health.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import { managerv1 } from "../../protocol/index.js";
import { connectionOf, contextValuesFor } from "../../protocol/caller.js";
import { RPC_READ_MAX_BYTES } from "../../protocol/server.js";
import type { ManagerMetrics } from "../metrics.js";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

// On every response of the port (console, API, docs, RPC, health): the
// console's scripts and styles are files of its own origin (the Vite build
// inlines none), it talks only to its own origin, and no other site may
// frame it (clickjacking) or make a browser guess a type (a JSON error
// sniffed as HTML).
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
// Swagger UI (/docs) sets some styles inline.
const DOCS_CSP = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'");

function setSecurityHeaders(res: ServerResponse, url: string): void {
  res.setHeader("content-security-policy", url === "/docs" || url.startsWith("/docs/") ? DOCS_CSP : CONTENT_SECURITY_POLICY);
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("referrer-policy", "no-referrer");
}

export interface ListenerOptions {
  service: ServiceImpl<typeof managerv1.ManagerService>;
  metrics?: ManagerMetrics;
  health?: Health;
  // HTTPS with the manager's certificate. Clients are asked for a
  // certificate but not required to show one: browsers and API users
  // authenticate as users; the component RPC checks the certificate itself
  // (rpc/manager-service.ts).
  tls?: TlsIdentity;
}

// The manager's one port: the components' Connect RPC (ManagerService) goes
// to Connect, /healthz and /readyz to Health, everything else (REST, open
// API, docs, console) to Fastify's `handler`.
export function createManagerServer(handler: Handler, o: ListenerOptions): Server {
  const trust = o.tls ? "tls" : "open";
  // Fastify's bodyLimit does not reach this path: Connect reads the body
  // itself, so it gets the same bound as every other RPC server.
  const connect = connectNodeAdapter({
    routes: (router) => router.service(managerv1.ManagerService, o.service),
    readMaxBytes: RPC_READ_MAX_BYTES,
    contextValues: (req) => contextValuesFor(connectionOf(req), trust),
  });
  const rpcPrefix = `/${managerv1.ManagerService.typeName}/`;
  const rpcRoutes = new Set(managerv1.ManagerService.methods.map((m) => rpcPrefix + m.name));
  const { metrics, health } = o;
  const dispatch: Handler = (req, res) => {
    const url = req.url ?? "";
    setSecurityHeaders(res, url);
    if (url.startsWith(rpcPrefix)) {
      if (metrics) {
        const started = performance.now();
        const route = rpcRoutes.has(url) ? url : "unmatched";
        res.once("finish", () => metrics.request(route, req.method ?? "", res.statusCode, (performance.now() - started) / 1000));
      }
      connect(req, res);
      return;
    }
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (health && isHealthPath(path)) {
      health.answer(path, req.method, res).catch(() => res.destroy());
      return;
    }
    handler(req, res);
  };
  if (!o.tls) return createHttpServer(dispatch);
  const server = createHttpsServer(o.tls.serverOptions(false), dispatch);
  // A rotated certificate serves new connections without a restart.
  o.tls.attach(server, false);
  return server;
}
