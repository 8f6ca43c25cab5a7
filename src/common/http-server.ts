import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { once } from "node:events";
import { parseHostPort, type HostPort } from "./address.js";
import { DamselflyError } from "./errors.js";

// Binds an HTTP server to exactly the address given ("HOST:PORT"; port 0
// picks a free one) and returns the address it got.
export async function listenOn(server: Server, listen: string, what: string): Promise<HostPort> {
  const { host, port } = parseHostPort(listen, what);
  server.listen(port, host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err))]);
  const addr = server.address();
  return { host, port: typeof addr === "object" && addr ? addr.port : port };
}

// Stops accepting, drops open keep-alive connections and waits for close.
export async function closeServer(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

// Whether a request carries a body (a length above 0, or chunked).
export function hasRequestBody(req: IncomingMessage): boolean {
  const cl = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (cl !== undefined && cl !== "0");
}

// How long a connection closed after an early answer stays open for its
// client to read that answer.
const LINGER_MS = 2_000;

// For a route that reads no request body: when one comes, the request is
// answered DF_ERR_BODY_TOO_LARGE (413) and the connection closed; true
// then. Node would otherwise read and drop the whole body, however large
// it says it is, to reuse the connection.
export function refuseBody(req: IncomingMessage, res: ServerResponse, what: string): boolean {
  if (!hasRequestBody(req)) return false;
  answerAndClose(req, res, new DamselflyError("DF_ERR_BODY_TOO_LARGE", `${what} takes no request body`));
  return true;
}

// An error answered while the request's body is still coming: written on
// the socket itself, then the connection half-closed and, LINGER_MS later,
// closed. Not node's own close after the response: closing a socket with
// unread data resets the connection, and the client can lose the answer
// with it. Nothing reads the body meanwhile (an unread request stops its
// socket), so it costs no memory.
export function answerAndClose(req: IncomingMessage, res: ServerResponse, err: DamselflyError): void {
  const socket = req.socket;
  if (res.headersSent || socket.destroyed) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ code: err.code, message: err.message }) + "\n";
  socket.end(
    `HTTP/1.1 ${err.httpStatus} ${STATUS_CODES[err.httpStatus] ?? "Error"}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-damselfly-error: ${err.code}\r\nconnection: close\r\n\r\n${body}`,
  );
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once("close", () => clearTimeout(timer));
}

// An error for a request whose body may be only partly read: closed after
// the answer (answerAndClose) unless the body was read whole.
export function bodyUnread(req: IncomingMessage): boolean {
  return hasRequestBody(req) && !req.complete;
}
