import http2 from "node:http2";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { parseHostPort, type HostPort } from "../common/address.js";
import type { FastRoute } from "./grpc-fast.js";
import { isHealthPath, type Health } from "../common/health.js";

export interface RpcServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

// Connect/gRPC/gRPC-web over cleartext HTTP/2 on exactly the address given, so
// stock gRPC clients can talk to us as well as our own Connect clients.
// `fast` routes serve their path before Connect sees it (see grpc-fast.ts),
// falling back to Connect for what they do not handle. With `health`, plain
// GET /healthz and /readyz are answered too (HTTP/2 only, like everything on
// this port: `curl --http2-prior-knowledge`).
export async function createRpcServer(
  listen: string,
  routes: (router: ConnectRouter) => void,
  fast: readonly FastRoute[] = [],
  opts: { health?: Health } = {},
): Promise<RpcServer> {
  const { host, port } = parseHostPort(listen);
  const rpc = connectNodeAdapter({ routes, requireConnectProtocolHeader: false });
  const health = opts.health;
  const connect: typeof rpc = health
    ? (req, res) => {
        const path = req.url ?? "";
        if (isHealthPath(path)) {
          health.answer(path, req.method, res).catch(() => res.destroy());
          return;
        }
        rpc(req, res);
      }
    : rpc;
  const byPath = new Map(fast.map((r) => [r.path, r]));
  // Without fast routes, node's own request/response handling; with them,
  // each stream goes to its fast route if it takes it, and to Connect through
  // the compatibility objects otherwise, as node's own handler would.
  const server = byPath.size === 0 ? http2.createServer((req, res) => connect(req, res)) : http2.createServer();
  if (byPath.size > 0) {
    server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      const r = byPath.get(String(headers[":path"]));
      if (r && r.serve(stream, headers)) return;
      const req = new http2.Http2ServerRequest(stream, headers, {}, rawHeaders);
      const res = new http2.Http2ServerResponse(stream);
      if (headers[":method"] === "CONNECT") {
        res.statusCode = http2.constants.HTTP_STATUS_METHOD_NOT_ALLOWED;
        res.end();
        return;
      }
      if (headers.expect !== undefined) {
        if (headers.expect !== "100-continue") {
          res.statusCode = http2.constants.HTTP_STATUS_EXPECTATION_FAILED;
          res.end();
          return;
        }
        res.writeContinue();
      }
      connect(req, res);
    });
  }
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
