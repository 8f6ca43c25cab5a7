import { Pool } from "undici";
import { DamselflyError } from "../../common/errors.js";
import { decodeSyncStream, type SyncMessage } from "../upload/sync-messages.js";
import type { LocalTask } from "../storage/local-task.js";
import { PieceWriter } from "./piece-writer.js";

// Unwritten bytes per piece in flight from a parent (16 in flight: 32 MiB).
const PARENT_WRITE_WINDOW = 2 * 1024 * 1024;

export interface ParentAddress {
  peerId: string;
  hostId: string;
  ip: string;
  port: number;
  isSeed: boolean;
}

export interface PieceAd {
  crc: number;
  length: number;
}

export interface ParentConnOptions {
  piecesPerParent: number;
  pieceTimeoutMs: number;
}

// One parent as seen by a child: its advertised pieces (from its sync stream),
// requests in flight, and measured throughput. Fetches go over a small
// keep-alive connection pool.
export class ParentConn {
  readonly pieces = new Map<number, PieceAd>();
  inFlight = 0;
  failures = 0;
  piecesServed = 0;
  bytes = 0;
  busyMicros = 0;
  closed = false;
  done = false;
  private readonly pool: Pool;
  private readonly syncAbort = new AbortController();

  constructor(readonly addr: ParentAddress, private readonly taskId: string, opts: ParentConnOptions) {
    const host = addr.ip.includes(":") ? `[${addr.ip}]` : addr.ip;
    this.pool = new Pool(`http://${host}:${addr.port}`, {
      connections: opts.piecesPerParent + 1,
      headersTimeout: opts.pieceTimeoutMs,
      bodyTimeout: opts.pieceTimeoutMs,
      connectTimeout: Math.min(opts.pieceTimeoutMs, 5_000),
      keepAliveTimeout: 30_000,
    });
  }

  get id(): string {
    return this.addr.peerId;
  }

  // Bytes per microsecond while busy; optimistic for parents not yet measured.
  get throughput(): number {
    return this.busyMicros > 0 ? this.bytes / this.busyMicros : this.addr.isSeed ? 2000 : 1000;
  }

  // Runs the sync stream, calling onMessage for each message; resolves when
  // the parent finished sending (done) and rejects when the stream breaks.
  async sync(onMessage: (msg: SyncMessage) => void): Promise<void> {
    const res = await this.pool.request({
      path: `/v1/tasks/${this.taskId}/sync`,
      method: "GET",
      signal: this.syncAbort.signal,
      // Parents ping every 15 s; a silent parent is a dead parent.
      bodyTimeout: 60_000,
    });
    if (res.statusCode !== 200) {
      res.body.resume();
      throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.id} answered sync with HTTP ${res.statusCode}`, { temporary: res.statusCode === 404 });
    }
    for await (const msg of decodeSyncStream(res.body)) {
      if (msg.type === "pieces") for (const [n, crc, length] of msg.pieces) this.pieces.set(n, { crc, length });
      onMessage(msg);
      if (msg.type === "done" || msg.type === "failed") {
        this.done = msg.type === "done";
        res.body.destroy();
        return;
      }
    }
    if (!this.done) throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.id} closed its sync stream early`);
  }

  // Downloads one piece straight into the task file; resolves with the
  // verified CRC, rejects on HTTP error, short body or CRC mismatch.
  async fetchPiece(task: LocalTask, n: number, offset: number, signal?: AbortSignal): Promise<{ crc: number; length: number }> {
    const ad = this.pieces.get(n);
    if (!ad) throw new DamselflyError("DF_ERR_PIECE_NOT_FOUND", `parent ${this.id} does not have piece ${n}`);
    const started = process.hrtime.bigint();
    const res = await this.pool.request({ path: `/v1/tasks/${this.taskId}/pieces/${n}`, method: "GET", signal: signal ?? null });
    if (res.statusCode !== 200) {
      res.body.resume();
      const busy = res.statusCode === 503;
      if (res.statusCode === 404) this.pieces.delete(n);
      throw new DamselflyError(busy ? "DF_ERR_UPLOAD_BUSY" : "DF_ERR_PARENT_FAILED", `parent ${this.id} answered piece ${n} with HTTP ${res.statusCode}`, { temporary: busy || res.statusCode === 404 });
    }
    const writer = new PieceWriter(task, offset, ad.length, PARENT_WRITE_WINDOW);
    try {
      for await (const chunk of res.body) {
        if ((await writer.push(chunk)) < chunk.length) throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.id} sent more than piece ${n}'s ${ad.length} bytes`);
      }
      await writer.flush();
    } catch (err) {
      res.body.destroy();
      if (err instanceof DamselflyError) throw err;
      // A full disk is ours, not the parent's fault.
      const local = DamselflyError.from(err);
      if (local.code === "DF_ERR_STORAGE_FULL" || local.code === "DF_ERR_STORAGE_IO") throw local;
      throw new DamselflyError("DF_ERR_PARENT_FAILED", `piece ${n} from parent ${this.id} broke off: ${(err as Error).message}`, { cause: err });
    }
    if (!writer.complete) throw new DamselflyError("DF_ERR_PARENT_FAILED", `piece ${n} from parent ${this.id} was cut short (${writer.received}/${ad.length} bytes)`);
    if (writer.crc !== ad.crc) {
      this.pieces.delete(n);
      throw new DamselflyError("DF_ERR_PIECE_CORRUPT", `piece ${n} from parent ${this.id} failed its CRC-32 check`);
    }
    this.bytes += ad.length;
    this.busyMicros += Number(process.hrtime.bigint() - started) / 1000;
    return { crc: writer.crc, length: ad.length };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.syncAbort.abort();
    this.pool.destroy().catch(() => undefined);
  }
}
