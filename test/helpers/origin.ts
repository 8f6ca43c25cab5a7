// A test origin: a node:http server on 127.0.0.1:<random port> serving
// in-memory files with Range/HEAD support, byte and request accounting,
// /status/<code> routes, and optional throttling or header delays. The
// benchmarks' origin (bench/origin-server.ts) is this server too, serving a
// file from disk.
import { createCipheriv, createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { pipeline } from "node:stream/promises";

// Deterministic pseudo-random bytes: AES-128-CTR keystream keyed by the seed.
export function randomBytesSeeded(size: number, seed: number | string = 0): Buffer {
  const key = createHash("sha256").update(`damselfly-test-seed:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const out = Buffer.allocUnsafe(size);
  const zeros = Buffer.alloc(Math.min(size, 4 << 20));
  for (let off = 0; off < size; off += zeros.length) {
    const n = Math.min(zeros.length, size - off);
    cipher.update(zeros.subarray(0, n)).copy(out, off);
  }
  return out;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export interface FileOptions {
  // Bytes per second for this file's bodies (overrides the origin default).
  throttle?: number;
  // Wait this long before sending the response headers.
  headerDelayMs?: number;
  // Extra response headers.
  headers?: Record<string, string>;
  // Do not advertise or honour Range requests (always 200 with the full body).
  noRanges?: boolean;
  // Omit Content-Length (chunked transfer encoding).
  noContentLength?: boolean;
  etag?: string;
  lastModified?: Date;
}

export interface OriginOptions {
  // Default bytes per second for every body (0 or undefined: unthrottled).
  throttle?: number;
  // Default delay before response headers, in ms.
  headerDelayMs?: number;
  // Where to listen (default 127.0.0.1, a random port).
  host?: string;
  port?: number;
  // Keep every request in `requests` (default true; a long benchmark keeps
  // only the counters).
  recordRequests?: boolean;
}

export interface DiskFileOptions {
  // `?prefix=N` is a resource of its own: the file's first N bytes (the
  // testbed's warm-up downloads). Any other query string is a 404.
  prefixQuery?: boolean;
}

export interface OriginRequest {
  method: string;
  // Path with the query string, as received.
  url: string;
  // Path without the query string.
  path: string;
  range: string | undefined;
  headers: http.IncomingHttpHeaders;
  status: number;
  // Body bytes sent for this request (updated while it streams).
  bytesSent: number;
  at: number;
}

export interface Origin {
  readonly port: number;
  // "http://127.0.0.1:<port>"
  readonly baseUrl: string;
  // Registers (or replaces) a file; returns its URL.
  addFile(path: string, data: Buffer, options?: FileOptions): string;
  // Registers deterministic random content of the given size; returns it.
  addRandomFile(path: string, size: number, seed?: number | string, options?: FileOptions): Buffer;
  // Serves a file from disk as it is (no ETag or Last-Modified, no
  // throttle); returns its URL.
  addDiskFile(path: string, file: string, options?: DiskFileOptions): string;
  removeFile(path: string): void;
  // URL of a path on this origin (the path need not be registered).
  url(path: string): string;
  // Body bytes sent for a path (query string ignored), or in total.
  bytesSent(path?: string): number;
  // Number of requests (any method, any status) for a path, or in total.
  requestCount(path?: string): number;
  // Responses under way (not yet sent in full nor cut off by the client).
  inFlight(): number;
  // Every request received, in order.
  readonly requests: readonly OriginRequest[];
  // Clears the counters and the request log.
  resetStats(): void;
  // Changes the defaults for later requests.
  setThrottle(bytesPerSecond: number | undefined): void;
  setHeaderDelay(ms: number | undefined): void;
  close(): Promise<void>;
}

interface Entry {
  // In memory, or a file on disk of `size` bytes.
  data?: Buffer;
  file?: { path: string; size: number; prefixQuery: boolean };
  options: FileOptions;
  etag?: string;
  lastModified?: string;
}

// The size a disk file's URL stands for (a `?prefix=N` cuts it short), or
// undefined for a query string it does not serve.
function diskSize(file: NonNullable<Entry["file"]>, rawUrl: string): number | undefined {
  const q = new URL(rawUrl, "http://origin").searchParams;
  if (!file.prefixQuery) return q.size === 0 ? file.size : undefined;
  const prefix = q.get("prefix");
  if ((prefix !== null && !/^\d{1,15}$/.test(prefix)) || [...q.keys()].some((k) => k !== "prefix")) return undefined;
  return prefix === null ? file.size : Math.min(Number(prefix), file.size);
}

function normalizePath(p: string): string {
  const path = p.split("?")[0]!;
  return path.startsWith("/") ? path : `/${path}`;
}

type RangeResult = { kind: "full" } | { kind: "partial"; start: number; end: number } | { kind: "unsatisfiable" };

// Single byte ranges only: "bytes=a-b", "bytes=a-", "bytes=-n". Anything else
// (including several ranges) is served as the full body, as RFC 9110 allows.
function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: "full" };
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return { kind: "full" };
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return { kind: "unsatisfiable" };
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return { kind: "full" };
  }
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "partial", start, end };
}

export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const files = new Map<string, Entry>();
  const sentByPath = new Map<string, number>();
  const countByPath = new Map<string, number>();
  const requests: OriginRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let totalSent = 0;
  let totalRequests = 0;
  let inFlight = 0;
  let defaultThrottle = opts.throttle;
  let defaultHeaderDelay = opts.headerDelayMs;
  let closed = false;
  const recordRequests = opts.recordRequests ?? true;

  const sleep = (ms: number, res: http.ServerResponse) =>
    new Promise<boolean>((resolve) => {
      if (ms <= 0) return resolve(!res.destroyed);
      const t = setTimeout(() => {
        timers.delete(t);
        res.off("close", onClose);
        resolve(!res.destroyed);
      }, ms);
      timers.add(t);
      const onClose = () => {
        clearTimeout(t);
        timers.delete(t);
        resolve(false);
      };
      res.once("close", onClose);
    });

  const account = (rec: OriginRequest, n: number) => {
    rec.bytesSent += n;
    totalSent += n;
    sentByPath.set(rec.path, (sentByPath.get(rec.path) ?? 0) + n);
  };

  // Writes body[start..end] honouring backpressure and the throttle.
  const sendBody = async (res: http.ServerResponse, rec: OriginRequest, body: Buffer, throttle: number | undefined) => {
    const tickMs = 50;
    const chunkSize = throttle && throttle > 0 ? Math.max(1, Math.floor((throttle * tickMs) / 1000)) : 256 * 1024;
    let off = 0;
    const started = Date.now();
    while (off < body.length) {
      if (res.destroyed) return;
      const chunk = body.subarray(off, off + chunkSize);
      const ok = res.write(chunk);
      account(rec, chunk.length);
      off += chunk.length;
      if (!ok) {
        const drained = await new Promise<boolean>((resolve) => {
          const onDrain = () => {
            res.off("close", onClose);
            resolve(true);
          };
          const onClose = () => {
            res.off("drain", onDrain);
            resolve(false);
          };
          res.once("drain", onDrain);
          res.once("close", onClose);
        });
        if (!drained) return;
      }
      if (throttle && throttle > 0 && off < body.length) {
        // Pace against the start time so timer jitter does not accumulate.
        const due = started + (off / throttle) * 1000;
        if (!(await sleep(due - Date.now(), res))) return;
      }
    }
    res.end();
  };

  // Streams a disk file's bytes start..end (inclusive).
  const sendFile = async (res: http.ServerResponse, rec: OriginRequest, path: string, start: number, end: number) => {
    const s = createReadStream(path, { start, end, highWaterMark: 1024 * 1024 });
    s.on("data", (c) => account(rec, c.length));
    await pipeline(s, res).catch(() => undefined);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const rawUrl = req.url ?? "/";
    const path = normalizePath(rawUrl);
    const rec: OriginRequest = {
      method: req.method ?? "GET",
      url: rawUrl,
      path,
      range: req.headers.range,
      headers: req.headers,
      status: 0,
      bytesSent: 0,
      at: Date.now(),
    };
    if (recordRequests) requests.push(rec);
    totalRequests++;
    countByPath.set(path, (countByPath.get(path) ?? 0) + 1);
    const isHead = req.method === "HEAD";

    const status = /^\/status\/(\d{3})$/.exec(path);
    if (status) {
      if (!(await sleep(defaultHeaderDelay ?? 0, res))) return;
      const code = Number(status[1]);
      const body = Buffer.from(`status ${code}\n`);
      rec.status = code;
      res.writeHead(code, { "content-type": "text/plain", "content-length": body.length });
      if (isHead) return void res.end();
      account(rec, body.length);
      res.end(body);
      return;
    }

    const found = files.get(path);
    const size = found?.file ? diskSize(found.file, rawUrl) : found?.data?.length;
    const entry = size === undefined ? undefined : found;
    if (req.method !== "GET" && req.method !== "HEAD") {
      rec.status = 405;
      res.writeHead(405, { allow: "GET, HEAD", "content-length": 0 });
      return void res.end();
    }
    if (!entry) {
      if (!(await sleep(defaultHeaderDelay ?? 0, res))) return;
      rec.status = 404;
      const body = Buffer.from("not found\n");
      res.writeHead(404, { "content-type": "text/plain", "content-length": body.length });
      if (isHead) return void res.end();
      account(rec, body.length);
      return void res.end(body);
    }

    const o = entry.options;
    if (!(await sleep(o.headerDelayMs ?? defaultHeaderDelay ?? 0, res))) return;
    const headers: Record<string, string | number> = {
      "content-type": "application/octet-stream",
      ...(entry.etag ? { etag: entry.etag } : {}),
      ...(entry.lastModified ? { "last-modified": entry.lastModified } : {}),
      ...(o.noRanges ? {} : { "accept-ranges": "bytes" }),
      ...o.headers,
    };
    const range = o.noRanges ? ({ kind: "full" } as const) : parseRange(req.headers.range, size!);
    if (range.kind === "unsatisfiable") {
      rec.status = 416;
      res.writeHead(416, { ...headers, "content-range": `bytes */${size}`, "content-length": 0 });
      return void res.end();
    }
    const [start, end] = range.kind === "partial" ? [range.start, range.end] : [0, size! - 1];
    rec.status = range.kind === "partial" ? 206 : 200;
    if (range.kind === "partial") headers["content-range"] = `bytes ${start}-${end}/${size}`;
    if (!o.noContentLength) headers["content-length"] = end - start + 1;
    res.writeHead(rec.status, headers);
    if (isHead) return void res.end();
    if (entry.file) await sendFile(res, rec, entry.file.path, start, end);
    else await sendBody(res, rec, entry.data!.subarray(start, end + 1), o.throttle ?? defaultThrottle);
  };

  const server = http.createServer((req, res) => {
    inFlight++;
    res.once("close", () => inFlight--);
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  server.keepAliveTimeout = 5_000;
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://${opts.host ?? "127.0.0.1"}:${port}`;
  const url = (p: string) => `${baseUrl}${p.startsWith("/") ? p : `/${p}`}`;

  const origin: Origin = {
    port,
    baseUrl,
    addFile(path, data, options = {}) {
      const p = normalizePath(path);
      files.set(p, {
        data,
        options,
        etag: options.etag ?? `"${sha256Hex(data).slice(0, 16)}"`,
        lastModified: (options.lastModified ?? new Date(0)).toUTCString(),
      });
      return url(path);
    },
    addRandomFile(path, size, seed = path, options = {}) {
      const data = randomBytesSeeded(size, seed);
      origin.addFile(path, data, options);
      return data;
    },
    addDiskFile(path, file, options = {}) {
      files.set(normalizePath(path), { file: { path: file, size: statSync(file).size, prefixQuery: options.prefixQuery ?? false }, options: {} });
      return url(path);
    },
    removeFile(path) {
      files.delete(normalizePath(path));
    },
    url,
    bytesSent(path) {
      return path === undefined ? totalSent : (sentByPath.get(normalizePath(path)) ?? 0);
    },
    requestCount(path) {
      return path === undefined ? totalRequests : (countByPath.get(normalizePath(path)) ?? 0);
    },
    inFlight: () => inFlight,
    requests,
    resetStats() {
      sentByPath.clear();
      countByPath.clear();
      requests.length = 0;
      totalSent = 0;
      totalRequests = 0;
    },
    setThrottle(bps) {
      defaultThrottle = bps;
    },
    setHeaderDelay(ms) {
      defaultHeaderDelay = ms;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await done;
    },
  };
  return origin;
}
