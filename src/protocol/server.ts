import http2 from "node:http2";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { parseHostPort, type HostPort } from "../common/address.js";
import type { FastRoute } from "./grpc-fast.js";

export interface RpcServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

// Connect/gRPC/gRPC-web over cleartext HTTP/2 on exactly the address given, so
// stock gRPC clients can talk to us as well as our own Connect clients.
// `fast` routes serve their path before Connect sees it (see grpc-fast.ts),
// falling back to Connect for what they do not handle.
export async function createRpcServer(listen: string, routes: (router: ConnectRouter) => void, fast: readonly FastRoute[] = []): Promise<RpcServer> {
  const { host, port } = parseHostPort(listen);
  const connect = connectNodeAdapter({ routes, requireConnectProtocolHeader: false });
  const byPath = new Map(fast.map((r) => [r.path, r]));
  const server = http2.createServer((req, res) => {
    const r = byPath.get(req.url);
    if (r && r.serve(req, res)) return;
    connect(req, res);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : port;
  return {
    address: { host, port: bound },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.close();
        server.close(() => resolve());
        // Streams that never end (announce streams) must not hold shutdown;
        // destroying the session alone only half-closes its socket.
        setTimeout(() => {
          for (const s of sessions) {
            const socket = s.socket;
            s.destroy();
            socket?.destroy();
          }
        }, 500).unref();
      }),
  };
}
