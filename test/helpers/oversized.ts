// Hostile request bodies for the limit tests: a body declared huge and
// streamed in 1 MiB chunks with backpressure until the server answers or
// closes (never more than declared), and the memory of the server process
// meanwhile (VmRSS from /proc, sampled).
import http2 from "node:http2";
import net from "node:net";
import { readFileSync } from "node:fs";

export const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(MiB);

// The resident memory of a process, in bytes.
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

// Runs `work` while sampling the process's RSS; returns its result with the
// RSS before and the most seen during (and right after) it.
export async function withRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; before: number; peak: number }> {
  const before = rssOf(pid);
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
  try {
    const result = await work();
    return { result, before, peak: Math.max(peak, rssOf(pid)) };
  } finally {
    clearInterval(timer);
  }
}

export interface Refusal {
  // The HTTP status (and for gRPC the grpc-status), once answered.
  status: number | undefined;
  grpcStatus: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  // Body bytes the server took before it closed the stream or connection
  // (all of them if it read and dropped the rest after answering).
  sent: number;
}

// Writes chunks while `open()`, waiting for drain; at most `total` bytes.
async function pump(write: (b: Buffer) => boolean, waitDrain: () => Promise<void>, open: () => boolean, total: number): Promise<number> {
  let sent = 0;
  while (sent < total && open()) {
    const n = Math.min(MiB, total - sent);
    const ok = write(n === MiB ? CHUNK : CHUNK.subarray(0, n));
    sent += n;
    if (!ok) await waitDrain();
  }
  return sent;
}

// An HTTP/2 POST of `total` declared bytes to `path` (a gRPC call when
// `grpcEnvelope`: one message of total - 5 bytes, its length prefix first).
export async function h2Oversized(
  authority: string,
  path: string,
  contentType: string,
  total: number,
  o: { socketPath?: string; grpcEnvelope?: boolean } = {},
): Promise<Refusal> {
  const session = http2.connect(authority, o.socketPath ? { createConnection: () => net.connect(o.socketPath!) } : {});
  session.on("error", () => {});
  try {
    const req = session.request({ ":method": "POST", ":path": path, "content-type": contentType, te: "trailers", "content-length": String(total) });
    req.on("error", () => {});
    const r: Refusal = { status: undefined, grpcStatus: undefined, headers: {}, sent: 0 };
    const closed = new Promise<void>((resolve) => req.once("close", resolve));
    req.on("response", (h) => {
      r.status = Number(h[":status"]);
      r.headers = h;
      if (h["grpc-status"] !== undefined) r.grpcStatus = String(h["grpc-status"]);
    });
    req.on("trailers", (h) => {
      if (h["grpc-status"] !== undefined) r.grpcStatus = String(h["grpc-status"]);
    });
    // gRPC-web carries its status in a trailer frame of the body.
    let body = "";
    req.on("data", (d: Buffer) => {
      if (body.length < 64 * 1024) body += d.toString("latin1");
      r.grpcStatus ??= /grpc-status: ?(\d+)/.exec(body)?.[1];
    });
    let head = 0;
    if (o.grpcEnvelope) {
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(total - 5, 1);
      req.write(prefix);
      head = 5;
    }
    const open = () => !req.closed && !req.destroyed;
    const drain = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          req.off("drain", done);
          resolve();
        };
        req.on("drain", done);
        void closed.then(done);
      });
    r.sent = head + (await pump((b) => req.write(b), drain, open, total - head));
    if (!req.closed) req.end();
    await closed;
    return r;
  } finally {
    session.destroy();
  }
}

// An HTTP/1.1 request of `total` declared bytes on a raw socket: the
// status line and headers of the answer, the bytes taken, and whether the
// server closed the connection (a keep-alive server that reads and drops
// the whole body answers, keeps it, and is given all `total` bytes).
export async function h1Oversized(
  port: number,
  method: string,
  target: string,
  total: number,
  extra: Record<string, string> = {},
): Promise<Refusal & { closedByServer: boolean }> {
  const socket = net.connect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  const headLines = Object.entries({ host: "127.0.0.1", "content-length": String(total), ...extra }).map(([k, v]) => `${k}: ${v}\r\n`);
  let text = "";
  let closedByServer = false;
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("data", (d: Buffer) => {
    if (text.length < 64 * 1024) text += d.toString("latin1");
  });
  socket.on("end", () => (closedByServer = true));
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  socket.write(`${method} ${target} HTTP/1.1\r\n${headLines.join("")}\r\n`);
  const drain = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        socket.off("drain", done);
        resolve();
      };
      socket.on("drain", done);
      void closed.then(done);
    });
  const sent = await pump(
    (b) => socket.write(b),
    drain,
    () => !socket.destroyed && !closedByServer,
    total,
  );
  // All declared bytes went in (the server read them): its answer, if not here yet.
  const answered = () => text.includes("\r\n\r\n") || socket.destroyed || closedByServer;
  while (!answered()) await Promise.race([closed, new Promise((resolve) => socket.once("data", resolve))]);
  socket.destroy();
  const [head = ""] = text.split("\r\n\r\n");
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const status = /^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1];
  return { status: status === undefined ? undefined : Number(status), grpcStatus: undefined, headers, sent, closedByServer };
}
