import http2 from "node:http2";
import { chmod, chown, rm } from "node:fs/promises";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { parseHostPort, type HostPort } from "../common/address.js";
import { capConnectionsPerAddress } from "../common/connection-cap.js";
import type { FastRoute } from "./grpc-fast.js";
import { isHealthPath, type Health } from "../common/health.js";
import type { TlsIdentity } from "../common/tls/identity.js";
import { callerOfSocket, connectionOf, contextValuesFor, type ServerTrust } from "./caller.js";

// Largest request message any RPC server reads: Connect's default is ~4 GiB,
// so one request could otherwise take the process's memory.
export const RPC_READ_MAX_BYTES = 4 * 1024 * 1024;
// Calls one HTTP/2 connection may have open at once (node's default is no
// limit): each holds its stream state and buffers until it ends.
export const DEFAULT_STREAMS_PER_CONNECTION = 256;

export interface RpcServerOptions {
  health?: Health;
  // Mutual TLS: only clients with a certificate of our CA get a session.
  tls?: TlsIdentity;
  // A Unix socket's mode and group (when `listen` is unix:PATH).
  socketMode?: number;
  socketGid?: number;
  // Per connection (SETTINGS_MAX_CONCURRENT_STREAMS; a stream over it is
  // refused by HTTP/2 itself), and connections one remote address may hold
  // (more are closed at once; 0 or none: no cap).
  streamsPerConnection?: number;
  connectionsPerAddress?: number;
}

export interface RpcServer {
  // For a Unix socket: port 0 and host = the socket path.
  readonly address: HostPort;
  readonly socketPath?: string;
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
  opts: RpcServerOptions = {},
): Promise<RpcServer> {
  const socketPath = listen.startsWith("unix:") ? listen.slice("unix:".length) : undefined;
  const { host, port } = socketPath !== undefined ? { host: socketPath, port: 0 } : parseHostPort(listen);
  const trust: ServerTrust = socketPath !== undefined ? "local" : opts.tls ? "tls" : "open";
  const rpc = connectNodeAdapter({
    routes,
    requireConnectProtocolHeader: false,
    readMaxBytes: RPC_READ_MAX_BYTES,
    contextValues: (req) => contextValuesFor(connectionOf(req), trust),
  });
  const health = opts.health;
  const connect: Connect = (req, res) => {
    stopReadingAfterAnswer(req.stream);
    const path = req.url ?? "";
    if (health && isHealthPath(path)) {
      const caller = callerOfSocket(connectionOf(req), trust).kind;
      health.answer(path, req.method, res, { detail: caller === "local" || caller === "tls" }).catch(() => res.destroy());
      return;
    }
    rpc(req, res);
  };
  const server = createHttp2Server(connect, fast, trust, socketPath === undefined ? opts.tls : undefined, opts.streamsPerConnection);
  if (opts.connectionsPerAddress) capConnectionsPerAddress(server, opts.connectionsPerAddress);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  await listenOn(server, socketPath, host, port, opts);
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : port;
  return {
    address: { host, port: bound },
    socketPath,
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

type Connect = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

// A call answered before its request was read whole (an error, a message
// over the limit): RST_STREAM(NO_ERROR) after the answer tells the client
// to stop sending (RFC 9113, 8.1). Otherwise the stream stays open, its
// unread data holding the window, until the client gives up. The answer
// is whole once its trailers went out: node's compatibility response sends
// them from its own "wantTrailers" listener, which runs after this one.
function stopReadingAfterAnswer(stream: http2.ServerHttp2Stream): void {
  stream.once("wantTrailers", () =>
    setImmediate(() => {
      if (!stream.readableEnded && !stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    }),
  );
}

// Without fast routes, node's own request/response handling; with them,
// each stream goes to its fast route if it takes it, and to Connect through
// the compatibility objects otherwise, as node's own handler would.
function createHttp2Server(connect: Connect, fast: readonly FastRoute[], trust: ServerTrust, tls: TlsIdentity | undefined, streams?: number) {
  const byPath = new Map(fast.map((r) => [r.path, r]));
  const handler = byPath.size === 0 ? (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => connect(req, res) : undefined;
  const settings = { settings: { maxConcurrentStreams: streams ?? DEFAULT_STREAMS_PER_CONNECTION } };
  const server: http2.Http2Server | http2.Http2SecureServer = tls
    ? http2.createSecureServer({ ...tls.serverOptions(), ...settings, ALPNProtocols: ["h2"] }, handler)
    : http2.createServer(settings, handler);
  if (tls) tls.attach(server as http2.Http2SecureServer);
  if (byPath.size === 0) return server;
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    const r = byPath.get(String(headers[":path"]));
    if (r && r.serve(stream, headers, callerOfSocket(stream.session?.socket, trust))) return;
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
  return server;
}

async function listenOn(
  server: http2.Http2Server | http2.Http2SecureServer,
  socketPath: string | undefined,
  host: string,
  port: number,
  opts: RpcServerOptions,
) {
  // A socket file left by a daemon that died would make listen fail.
  if (socketPath !== undefined) await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if (socketPath !== undefined) server.listen(socketPath, done);
    else server.listen(port, host, done);
  });
  if (socketPath !== undefined) {
    await chmod(socketPath, opts.socketMode ?? 0o660);
    if (opts.socketGid !== undefined) await chown(socketPath, process.getuid?.() ?? 0, opts.socketGid);
  }
}
