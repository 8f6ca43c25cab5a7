import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { DamselflyError, ERROR_CODES } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { CertificateAuthority } from "./ca.js";
import type { ProxyPolicy } from "./proxy-policy.js";

const ESTABLISHED = "HTTP/1.1 200 Connection Established\r\n\r\n";
const TARGET = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

export interface ConnectOptions {
  intercept: RegExp[];
  ca: CertificateAuthority | undefined;
  logger: Logger;
  // Where tunnels may go (ports, and addresses past the egress policy).
  policy: ProxyPolicy;
  // Requests decrypted from an intercepted tunnel; origin is https://host[:port].
  onRequest(req: IncomingMessage, res: ServerResponse, origin: string): void;
  // Counts each CONNECT: tunnel or intercept, and whether it came up.
  onConnect?(kind: "tunnel" | "intercept", established: boolean): void;
}

// CONNECT: hosts matching an intercept rule get TLS terminated with a leaf
// certificate from the daemon's CA, and their requests go through the proxy's
// normal routing; every other tunnel is spliced to the target untouched.
export class ConnectHandler {
  private readonly sockets = new Set<Duplex>();
  private readonly origins = new WeakMap<object, string>();
  private readonly inner: http.Server;

  constructor(private readonly o: ConnectOptions) {
    this.inner = http.createServer((req, res) => {
      const origin = this.origins.get(req.socket);
      if (!origin) {
        res.destroy();
        return;
      }
      o.onRequest(req, res, origin);
    });
    this.inner.on("clientError", (_err, socket) => badRequest(socket));
  }

  // The server's "connect" listener: whatever goes wrong fails this CONNECT,
  // never the process.
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      this.start(req, socket, head);
    } catch (err) {
      const e = DamselflyError.from(err);
      this.o.logger.warn({ code: e.code, err: e.message }, "proxy: CONNECT failed");
      rejectConnect(socket, e);
    }
  }

  private start(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.track(socket);
    const m = TARGET.exec(req.url ?? "");
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) {
      this.o.onConnect?.("tunnel", false);
      socket.end("HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nx-damselfly-error: DF_ERR_INVALID_REQUEST\r\n\r\nCONNECT needs host:port\n");
      return;
    }
    const host = m[1] ?? m[2]!;
    const hostPort = `${m[1] ? `[${host}]` : host}:${port}`;
    try {
      this.o.policy.checkConnectPort(port);
    } catch (err) {
      this.o.onConnect?.("tunnel", false);
      this.o.logger.warn({ target: hostPort, err: (err as Error).message }, "proxy: CONNECT refused");
      return rejectConnect(socket, err as DamselflyError);
    }
    if (this.o.intercept.some((r) => r.test(hostPort))) {
      const state = { established: false };
      this.intercept(socket, head, host, hostPort, state).then(
        () => this.o.onConnect?.("intercept", true),
        (err: unknown) => {
          this.o.onConnect?.("intercept", false);
          const e = DamselflyError.from(err);
          this.o.logger.warn({ target: hostPort, code: e.code, err: e.message }, "proxy: TLS interception failed");
          // Before "200 Connection Established" the client still reads HTTP.
          if (!state.established) rejectConnect(socket, e);
          else socket.destroy();
        },
      );
    } else this.tunnel(socket, head, host, port, hostPort);
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.inner.closeAllConnections();
  }

  private track(s: Duplex): void {
    this.sockets.add(s);
    s.once("close", () => this.sockets.delete(s));
    s.on("error", () => s.destroy());
  }

  private async intercept(socket: Duplex, head: Buffer, host: string, hostPort: string, state: { established: boolean }): Promise<void> {
    if (!this.o.ca) throw new DamselflyError("DF_ERR_CONFIG", "interception is configured but no proxy CA is loaded");
    const context = await this.o.ca.secureContextFor(host);
    state.established = true;
    socket.write(ESTABLISHED);
    if (head.length > 0) socket.unshift(head);
    const secure = new tls.TLSSocket(socket as net.Socket, { isServer: true, secureContext: context, ALPNProtocols: ["http/1.1"] });
    this.track(secure);
    this.origins.set(secure, hostPort.endsWith(":443") ? `https://${hostPort.slice(0, -4)}` : `https://${hostPort}`);
    this.inner.emit("connection", secure);
  }

  private tunnel(socket: Duplex, head: Buffer, host: string, port: number, hostPort: string): void {
    const upstream = this.o.policy.connect(host, port);
    this.track(upstream);
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      this.o.onConnect?.("tunnel", true);
      socket.write(ESTABLISHED);
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.once("error", (err) => {
      if (!connected) {
        this.o.onConnect?.("tunnel", false);
        this.o.logger.warn({ target: hostPort, err: (err as NodeJS.ErrnoException).code ?? err.message }, "proxy: CONNECT target unreachable");
        if (err instanceof DamselflyError) return rejectConnect(socket, err);
        socket.end("HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\nx-damselfly-error: DF_ERR_SOURCE_UNREACHABLE\r\n\r\n");
      } else socket.destroy();
    });
    upstream.once("close", () => socket.destroy());
    socket.once("close", () => upstream.destroy());
  }
}

function rejectConnect(socket: Duplex, e: DamselflyError): void {
  const status = ERROR_CODES[e.code]?.httpStatus ?? 500;
  const body = JSON.stringify({ code: e.code, message: e.message }) + "\n";
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-damselfly-error: ${e.code}\r\nconnection: close\r\n\r\n${body}`,
  );
}

// What node's default clientError handler would answer, plus our error code;
// a connection that already broke is just closed.
export function badRequest(socket: Duplex): void {
  if (socket.writable && !socket.writableEnded) {
    socket.end(
      "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nx-damselfly-error: DF_ERR_INVALID_REQUEST\r\nconnection: close\r\n\r\nmalformed HTTP request\n",
    );
  } else socket.destroy();
}
