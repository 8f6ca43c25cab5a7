import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

// gRPC over HTTP/2 (h2c) to one of our servers. One transport per peer keeps
// one HTTP/2 session with keep-alive pings, so a dead peer is noticed.
export function createRpcTransport(baseUrl: string): Transport {
  return createGrpcTransport({
    baseUrl,
    pingIntervalMs: 10_000,
    pingTimeoutMs: 5_000,
    idleConnectionTimeoutMs: 60_000,
  });
}

// The Connect protocol over HTTP/1.1 to the manager: it shares one port with
// the REST API and console, and its calls are all unary.
export function createManagerTransport(baseUrl: string): Transport {
  return createConnectTransport({ baseUrl, httpVersion: "1.1" });
}
