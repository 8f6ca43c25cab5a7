import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import { DamselflyError } from "../../common/errors.js";
import { isTaskId } from "../../common/task-id.js";
import { crc32Update } from "../../common/pieces.js";
import { drainOrClose } from "../../common/streams.js";
import type { HostPort } from "../../common/address.js";
import { closeServer, listenOn, refuseBody } from "../../common/http-server.js";
import { addressGroup } from "../../common/cidr.js";
import type { Logger } from "../../common/logger.js";
import type { Storage } from "../storage/storage.js";
import type { LocalTask, PieceInfo } from "../storage/local-task.js";
import { childOf, ERROR_HEADER, formatPieceRecord, parseDataPlaneUrl, PIECE_CRC32_HEADER, PIECE_DIGEST_HEADER } from "../../protocol/index.js";
import { buffers } from "../buffer-pool.js";
import { PieceOffers } from "./piece-offers.js";
import { SyncFanout } from "./sync-fanout.js";
import { SyncStream } from "./sync-stream.js";
import { UploadSlots } from "./upload-slots.js";
import { ConnectionGuard } from "./connection-guard.js";
import { isHealthPath, type Health } from "../../common/health.js";
import type { Throttle } from "../../common/token-bucket.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import { identityOfSocket } from "../../common/tls/roles.js";

const CHUNK = 512 * 1024;
// How long a piece request waits for a free upload slot before it is told
// busy, and how many may wait per slot.
const SLOT_WAIT_MS = 5_000;
const SYNC_BATCH_MS = 25;
const SLOT_QUEUE_PER_SLOT = 4;
const BUSY_BODY = JSON.stringify({ code: "DF_ERR_UPLOAD_BUSY", message: "all upload slots are busy" }) + "\n";
const BUSY_HEADERS = {
  "content-type": "application/json",
  [ERROR_HEADER]: "DF_ERR_UPLOAD_BUSY",
  "retry-after": "1",
  "content-length": String(BUSY_BODY.length),
};

export interface UploadServerOptions {
  listen: string;
  storage: Storage;
  logger: Logger;
  // Piece uploads streamed at once. Few and fast beats many and slow: a child
  // can pass a piece on only once it has all of it, so an uplink split 200
  // ways leaves the whole swarm waiting for its first pieces.
  uploadConcurrency: number;
  // What one remote address may hold (default: half the slots, rounded up;
  // 256 connections), and how long a response may make no progress or a
  // connection wait for a request (config upload.*; see ConnectionGuard).
  slotsPerAddress?: number;
  connectionsPerAddress?: number;
  writeStallTimeoutMs?: number;
  idleTimeoutMs?: number;
  // /healthz and /readyz on the data plane port too.
  health?: Health;
  // The host's upload limit: piece bytes count against it before they are
  // written, and a piece waits for tokens between chunks.
  throttle?: Throttle;
  // A seed peer suggests distinct pieces to its children until every piece
  // has been offered once (see PieceOffers).
  superSeeding?: boolean;
  // Mutual TLS: only peer and seed-peer certificates of the cluster CA are
  // served, and only pieces with a signed digest (see LocalTask.trusted).
  tls?: TlsIdentity | undefined;
}

export interface UploadStats {
  active: number;
  // Requests answered 503 because every slot was taken.
  busy: number;
  // Connections closed for being over the per-address cap, or for making no
  // progress writing (ConnectionGuard).
  refusedConnections: number;
  stalledConnections: number;
  pieces: number;
  bytesTotal: number;
  corruptDetected: number;
}

// The serving side of the piece data plane (its format: protocol/data-plane.ts;
// a seed in initial seeding also suggests pieces, see PieceOffers), and
//   GET /healthy, /healthz, /readyz
// Only pieces recorded as verified are served, and each is re-checked against
// its CRC while it streams: a piece that fails is cut off before its last byte
// and dropped from the store. With TLS a client without a cluster
// certificate fails the handshake, one of another role is answered 403
// DF_ERR_PEER_ROLE, and a piece goes out only with its fetcher-signed
// digest (a task fetched without a scheduler's grant has none: never served).
export class UploadServer {
  readonly stats: UploadStats;
  private server: http.Server | undefined;
  private readonly slots: UploadSlots;
  private readonly guard: ConnectionGuard;
  private readonly offers = new WeakMap<LocalTask, PieceOffers>();
  private readonly fanouts = new WeakMap<LocalTask, SyncFanout>();
  // Set by drain(): the daemon is leaving, new piece requests are told busy.
  private draining = false;
  private idleWaiter: (() => void) | undefined;
  // TLS connections already checked: their certificate's role is allowed.
  private readonly allowed = new WeakSet<object>();
  address: HostPort = { host: "", port: 0 };

  constructor(private readonly opts: UploadServerOptions) {
    const total = opts.uploadConcurrency;
    this.slots = new UploadSlots({ total, perAddress: opts.slotsPerAddress || Math.ceil(total / 2), waitMs: SLOT_WAIT_MS, queuePerSlot: SLOT_QUEUE_PER_SLOT });
    this.guard = new ConnectionGuard({ perAddress: opts.connectionsPerAddress || 256, stallMs: opts.writeStallTimeoutMs || 30_000 });
    const { slots, guard } = this;
    this.stats = {
      get active() {
        return slots.active;
      },
      busy: 0,
      pieces: 0,
      bytesTotal: 0,
      corruptDetected: 0,
      get refusedConnections() {
        return guard.refused;
      },
      get stalledConnections() {
        return guard.stalled;
      },
    };
  }

  async start(): Promise<void> {
    // A connection waiting for a request (a new one, or kept alive between
    // requests) is closed after idleTimeout; the check runs often enough
    // for a short one.
    const idle = this.opts.idleTimeoutMs || 60_000;
    const opts = { keepAliveTimeout: idle, requestTimeout: 0, headersTimeout: idle, connectionsCheckingInterval: Math.min(30_000, Math.max(100, idle / 4)) };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.route(req, res).catch((err) => this.fail(res, DamselflyError.from(err)));
    };
    const tls = this.opts.tls;
    // An HTTPS server is an HTTP server on TLS sockets (same request API).
    const server = tls ? (https.createServer({ ...opts, ...tls.serverOptions() }, handler) as unknown as http.Server) : http.createServer(opts, handler);
    server.on("connection", (s: Socket) => s.setNoDelay(true));
    this.guard.attach(server, tls !== undefined);
    // A rotated certificate is used for new connections.
    if (tls) tls.attach(server as unknown as https.Server);
    this.address = await listenOn(server, this.opts.listen, "upload listen address");
    this.server = server;
  }

  // Graceful exit: new piece and sync requests are answered busy (children
  // take the piece elsewhere), those waiting for a slot too; uploads already
  // streaming go on. Resolves once none is left, or after timeoutMs (false).
  async drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    this.slots.refuseWaiting();
    if (this.stats.active === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = await Promise.race([
      new Promise<boolean>((resolve) => (this.idleWaiter = () => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.idleWaiter = undefined;
    return idle;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.guard.close();
    await closeServer(server);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (this.opts.tls) this.checkRole(req);
    if (refuseBody(req, res, "the data plane")) return;
    if (this.opts.health && isHealthPath(path)) return this.opts.health.answer(path, req.method, res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      throw new DamselflyError("DF_ERR_INVALID_REQUEST", `method ${req.method} not allowed`);
    }
    if (path === "/healthy") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    const r = parseDataPlaneUrl(url);
    if (!r) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `unknown path ${JSON.stringify(path.slice(0, 200))}`);
    const id = r.taskId;
    if (!isTaskId(id)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "task id must be 64 lowercase hex digits");
    const task = this.opts.storage.get(id);
    // With TLS a finished task without a bundle (fetched without a grant)
    // is not handed on; one still downloading may yet get one.
    if (!task || (this.opts.tls && task.done && task.bundles.size === 0)) {
      throw new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${id} is not on this peer`);
    }
    if (this.draining) {
      this.stats.busy++;
      res.writeHead(503, BUSY_HEADERS).end(BUSY_BODY);
      return;
    }
    const child = childOf(r.query);
    if (r.kind === "sync") return this.sync(task, req, res, child);
    return this.piece(task, r.number, req, res, child);
  }

  // The data plane is for peers and seed peers: the TLS handshake already
  // proved the certificate is of our CA; here its role.
  private checkRole(req: http.IncomingMessage): void {
    const socket = req.socket;
    if (this.allowed.has(socket)) return;
    const who = identityOfSocket(socket);
    if (!who || (who.role !== "peer" && who.role !== "seed-peer")) {
      throw new DamselflyError("DF_ERR_PEER_ROLE", `the data plane serves peers and seed peers, not ${who ? `a ${who.role}` : "this caller"}`);
    }
    this.allowed.add(socket);
  }

  // Initial seeding state of a task, while it lasts.
  private offersFor(task: LocalTask): PieceOffers | undefined {
    if (!this.opts.superSeeding) return undefined;
    let o = this.offers.get(task);
    if (!o) this.offers.set(task, (o = new PieceOffers(task)));
    return o.active ? o : undefined;
  }

  private async piece(task: LocalTask, n: number, req: http.IncomingMessage, res: http.ServerResponse, child: string | undefined): Promise<void> {
    const info = task.pieces.get(n);
    if (!info || (this.opts.tls && !task.bundles.covers(info)))
      throw new DamselflyError("DF_ERR_PIECE_NOT_FOUND", `piece ${n} of task ${task.id} is not available here`);
    if (child !== undefined) this.offers.get(task)?.requested(child, n);
    // Held from here (waiting for a slot included): the disk GC never evicts
    // a task while a child is fetching from it.
    task.retain();
    const address = addressGroup(req.socket.remoteAddress ?? "");
    if (!(await this.slots.acquire(address, () => res.destroyed))) {
      task.release();
      // Routine flow control: answered without building an error.
      this.stats.busy++;
      res.writeHead(503, BUSY_HEADERS).end(BUSY_BODY);
      return;
    }
    this.stats.pieces++;
    try {
      task.touch();
      const headers: Record<string, string> = {
        "content-type": "application/octet-stream",
        "content-length": String(info.length),
        [PIECE_CRC32_HEADER]: String(info.crc),
      };
      if (this.opts.tls && info.trust) headers[PIECE_DIGEST_HEADER] = formatPieceRecord(info.trust);
      res.writeHead(200, headers);
      if (req.method === "HEAD") {
        res.end();
        return;
      }
      await this.streamPiece(task, info, res);
    } finally {
      task.release();
      this.slots.release(address);
      if (this.stats.active === 0) this.idleWaiter?.();
    }
  }

  private async streamPiece(task: LocalTask, info: PieceInfo, res: http.ServerResponse): Promise<void> {
    const { offset } = task.pieceRange(info.number);
    // A piece this process verified moments ago (the task is still
    // downloading) is served as is; stored pieces are re-checked for rot.
    const check = !task.isFresh(info.number);
    let crc = 0;
    let sent = 0;
    while (sent < info.length) {
      if (res.destroyed) return;
      const len = Math.min(CHUNK, info.length - sent);
      const buf = await task.read(offset + sent, len, buffers.get(CHUNK));
      if (check) crc = crc32Update(buf, crc);
      const last = sent + len === info.length;
      if (check && last && crc !== info.crc) {
        // Cut the response short: the child sees a truncated piece, and we stop
        // advertising a piece that rotted on disk.
        this.stats.corruptDetected++;
        this.opts.logger.warn({ taskId: task.id, piece: info.number }, "stored piece failed CRC-32 check; not served, dropped");
        await task.invalidatePiece(info.number);
        res.destroy();
        this.opts.storage.emit("corrupt", task);
        return;
      }
      const throttle = this.opts.throttle;
      if (throttle && !throttle.take(len)) {
        await throttle.waitAsync();
        if (res.destroyed) {
          buffers.put(buf);
          return;
        }
      }
      sent += len;
      this.stats.bytesTotal += len;
      if (!res.write(buf, () => buffers.put(buf))) await drainOrClose(res);
    }
    res.end();
  }

  // Streams piece availability to one child (SyncStream).
  private sync(task: LocalTask, req: http.IncomingMessage, res: http.ServerResponse, child: string | undefined): void {
    const offers = child === undefined ? undefined : this.offersFor(task);
    // New pieces go out in one line per SYNC_BATCH_MS: every child of every
    // parent hears of every piece, so a line per piece is the bulk of the
    // control traffic in a big swarm.
    let fanout = this.fanouts.get(task);
    const trust = this.opts.tls !== undefined;
    if (!fanout) this.fanouts.set(task, (fanout = new SyncFanout(task, SYNC_BATCH_MS, trust)));
    new SyncStream(task, res, fanout, offers ? { offers, child: child! } : undefined, trust).start(req);
  }

  private fail(res: http.ServerResponse, err: DamselflyError): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({ code: err.code, message: err.message }) + "\n";
    // A length, not chunked: the child's piece client keeps the connection.
    const headers: Record<string, string> = { "content-type": "application/json", [ERROR_HEADER]: err.code, "content-length": String(Buffer.byteLength(body)) };
    res.writeHead(err.httpStatus, headers).end(body);
  }
}
