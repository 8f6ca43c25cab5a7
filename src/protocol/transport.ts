import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

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
