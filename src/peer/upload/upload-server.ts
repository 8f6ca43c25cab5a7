import http from "node:http";
import type { Socket } from "node:net";
import { DamselflyError } from "../../common/errors.js";
import { isTaskId } from "../../common/task-id.js";
import { crc32Update } from "../../common/pieces.js";
import { drainOrClose } from "../../common/streams.js";
import type { HostPort } from "../../common/address.js";
import { closeServer, listenOn } from "../../common/http-server.js";
import type { Logger } from "../../common/logger.js";
import type { Storage } from "../storage/storage.js";
import type { LocalTask, PieceInfo } from "../storage/local-task.js";
import { encodeSyncLine, type SyncMessage } from "./sync-messages.js";
import { BufferPool } from "./buffer-pool.js";

const CHUNK = 512 * 1024;
const PING_MS = 15_000;

export interface UploadServerOptions {
  listen: string;
  storage: Storage;
  logger: Logger;
  uploadSlots: number;
  // A stored piece failed its check and was dropped: fetch it again.
  onCorruptPiece?: (task: LocalTask) => void;
}

export interface UploadStats {
  active: number;
  bytesTotal: number;
  corruptDetected: number;
}

// The piece data plane (plain HTTP/1.1, keep-alive):
//   GET /v1/tasks/{taskId}/pieces/{n}   one verified piece
//   GET /v1/tasks/{taskId}/sync         NDJSON stream of pieces as they finish
//   GET /healthy
// Only pieces recorded as verified are served, and each is re-checked against
// its CRC while it streams: a piece that fails is cut off before its last byte
// and dropped from the store.
export class UploadServer {
  readonly stats: UploadStats = { active: 0, bytesTotal: 0, corruptDetected: 0 };
  private server: http.Server | undefined;
  private readonly pool = new BufferPool(CHUNK, 16);
  address: HostPort = { host: "", port: 0 };

  constructor(private readonly opts: UploadServerOptions) {}

  async start(): Promise<void> {
    const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 30_000 }, (req, res) => {
      this.route(req, res).catch((err) => this.fail(res, DamselflyError.from(err)));
    });
    server.on("connection", (s: Socket) => s.setNoDelay(true));
    this.address = await listenOn(server, this.opts.listen, "upload listen address");
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await closeServer(server);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "").split("?")[0]!;
    if (req.method !== "GET" && req.method !== "HEAD") {
      throw new DamselflyError("DF_ERR_INVALID_REQUEST", `method ${req.method} not allowed`);
    }
    if (path === "/healthy") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    const m = /^\/v1\/tasks\/([^/]+)\/(sync|pieces\/(\d{1,9}))$/.exec(path);
    if (!m) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `unknown path ${JSON.stringify(path.slice(0, 200))}`);
    const id = m[1]!;
    if (!isTaskId(id)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "task id must be 64 lowercase hex digits");
    const task = this.opts.storage.get(id);
    if (!task) throw new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${id} is not on this peer`);
    if (m[2] === "sync") return this.sync(task, req, res);
    return this.piece(task, Number(m[3]), req, res);
  }

  private async piece(task: LocalTask, n: number, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const info = task.pieces.get(n);
    if (!info) throw new DamselflyError("DF_ERR_PIECE_NOT_FOUND", `piece ${n} of task ${task.id} is not available here`);
    if (this.stats.active >= this.opts.uploadSlots) throw new DamselflyError("DF_ERR_UPLOAD_BUSY", "all upload slots are busy", { temporary: true });
    this.stats.active++;
    try {
      task.touch();
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": String(info.length),
        "x-damselfly-piece-crc32": String(info.crc),
      });
      if (req.method === "HEAD") {
        res.end();
        return;
      }
      await this.streamPiece(task, info, res);
    } finally {
      this.stats.active--;
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
      const buf = await task.read(offset + sent, len, this.pool.get());
      if (check) crc = crc32Update(buf, crc);
      const last = sent + len === info.length;
      if (check && last && crc !== info.crc) {
        // Cut the response short: the child sees a truncated piece, and we stop
        // advertising a piece that rotted on disk.
        this.stats.corruptDetected++;
        this.opts.logger.warn({ taskId: task.id, piece: info.number }, "stored piece failed CRC-32 check; not served, dropped");
        await task.invalidatePiece(info.number);
        res.destroy();
        this.opts.onCorruptPiece?.(task);
        return;
      }
      sent += len;
      this.stats.bytesTotal += len;
      if (!res.write(buf, () => this.pool.put(buf))) await drainOrClose(res);
    }
    res.end();
  }

  // Streams piece availability: what the task already has, then each new piece
  // as it is verified, then "done" (or "failed").
  private sync(task: LocalTask, req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    const send = (msg: SyncMessage): void => {
      if (!res.destroyed) res.write(encodeSyncLine(msg));
    };
    const sendInfo = (): void => send({ type: "info", contentLength: task.meta.contentLength, pieceLength: task.meta.pieceLength });
    if (task.meta.pieceLength > 0) sendInfo();
    const existing = [...task.pieces.values()];
    if (existing.length > 0) send({ type: "pieces", pieces: existing.map((p) => [p.number, p.crc, p.length]) });
    const onPiece = (p: PieceInfo): void => send({ type: "pieces", pieces: [[p.number, p.crc, p.length]] });
    const onDone = (): void => {
      sendInfo();
      send({ type: "done" });
      cleanup();
      res.end();
    };
    const onFailed = (err: DamselflyError): void => {
      send({ type: "failed", code: err.code, message: err.message, ...(err.sourceStatus ? { sourceStatus: err.sourceStatus } : {}) });
      cleanup();
      res.end();
    };
    const ping = setInterval(() => send({ type: "ping" }), PING_MS);
    const cleanup = (): void => {
      clearInterval(ping);
      task.off("piece", onPiece);
      task.off("info", sendInfo);
      task.off("done", onDone);
      task.off("failed", onFailed);
    };
    if (task.done) return onDone();
    if (task.failure) return onFailed(task.failure);
    task.on("piece", onPiece);
    task.on("info", sendInfo);
    task.on("done", onDone);
    task.on("failed", onFailed);
    req.on("close", cleanup);
  }

  private fail(res: http.ServerResponse, err: DamselflyError): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = { "content-type": "application/json", "x-damselfly-error": err.code };
    if (err.code === "DF_ERR_UPLOAD_BUSY") headers["retry-after"] = "1";
    res.writeHead(err.httpStatus, headers).end(JSON.stringify({ code: err.code, message: err.message }) + "\n");
  }
}
