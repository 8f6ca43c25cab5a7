import https from "node:https";
import net from "node:net";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { ClientTlsOptions, TlsIdentity } from "../common/tls/identity.js";

export interface TransportTls {
  readonly identity: TlsIdentity;
  readonly server: ClientTlsOptions;
}

// "unix:/path" to a Unix-socket target; anything else unchanged.
export function unixSocketOf(target: string): string | undefined {
  return target.startsWith("unix:") ? target.slice("unix:".length) : undefined;
}

// gRPC over HTTP/2 to one of our servers: h2c on loopback without TLS, or
// mutual TLS with `tls` (the URL's scheme is then https), or a Unix socket
// (unix:PATH). One transport per peer keeps one HTTP/2 session with
// keep-alive pings, so a dead peer is noticed.
export function createRpcTransport(target: string, tls?: TransportTls): Transport {
  const socket = unixSocketOf(target);
  let baseUrl = socket !== undefined ? "http://localhost" : target;
  let nodeOptions: object | undefined;
  if (socket !== undefined) nodeOptions = { createConnection: () => net.connect(socket) };
  else if (tls) {
    baseUrl = baseUrl.replace(/^http:/, "https:");
    nodeOptions = tls.identity.clientOptions(tls.server);
  }
  return createGrpcTransport({
    baseUrl,
    pingIntervalMs: 10_000,
    pingTimeoutMs: 5_000,
    idleConnectionTimeoutMs: 60_000,
    readMaxBytes: 4 * 1024 * 1024,
    ...(nodeOptions ? { nodeOptions } : {}),
  });
}

// The Connect protocol over HTTP/1.1 to the manager: it shares one port with
// the REST API and console, and its calls are all unary.
export function createManagerTransport(baseUrl: string, tls?: TransportTls): Transport {
  if (!tls) return createConnectTransport({ baseUrl, httpVersion: "1.1", readMaxBytes: 4 * 1024 * 1024 });
  // Its own agent: node's global one pools sockets by address and ignores
  // secureContext, so two identities in one process (`damselfly up`, a
  // test) would share a connection made with the other's certificate.
  const nodeOptions = Object.assign(tls.identity.clientOptions(tls.server), { agent: new https.Agent({ keepAlive: true }) });
  return createConnectTransport({
    baseUrl: baseUrl.replace(/^http:/, "https:"),
    httpVersion: "1.1",
    readMaxBytes: 4 * 1024 * 1024,
    nodeOptions,
  });
}
