import type { ServerResponse } from "node:http";
import { DamselflyError } from "../../common/errors.js";
import { Digester, parseDigest, formatDigest, type Digest } from "../../common/digest.js";
import type { Logger } from "../../common/logger.js";
import type { Span } from "../../common/trace.js";
import { blobDownload, type Download } from "../../protocol/index.js";
import type { DownloadManager, TaskHandle } from "../download-manager.js";
import type { HttpSource } from "../source/http-source.js";
import type { LocalTask } from "../storage/local-task.js";
import { waitForInfo, waitUntil } from "../api/task-reader.js";
import { readTaskChunks, type ChunkPool } from "../api/piece-chunks.js";
import { drainOrClose } from "../../common/streams.js";
import { buffers } from "../buffer-pool.js";
import { resolveRange, type ByteRangeSpec } from "./range.js";
import { originRange } from "./origin-range.js";

export interface P2PObject {
  // Upstream URL the swarm (or this daemon, on fallback) fetches from.
  url: string;
  // End-to-end client headers for the origin (credentials included): they
  // travel with the task to whoever fetches from the origin, never to disk.
  headers: Record<string, string>;
  // "sha256:<hex>" for content-addressed objects (blobs): the task is keyed by
  // it and the bytes are checked against it before the response completes.
  digest?: string;
  // Size from the access check, when the registry said.
  size: number;
  range: ByteRangeSpec | undefined;
  // The client sent "TE: trailers": the response is chunked and ends with
  // trailers counting where the bytes came from (known only at the end).
  trailers?: boolean;
  // X-Damselfly-Rate-Limit: bytes per second for this task's download.
  rateLimit?: number;
}

export interface P2PDeps {
  tasks: DownloadManager;
  source: HttpSource;
  logger: Logger;
  stallTimeoutMs: number;
  // The proxied request's span: a download it starts joins its trace.
  span?: Span;
}

export interface ServeResult {
  // P2P could not start: nothing was sent, the caller forwards instead.
  declined?: DamselflyError;
  // A response sent whole: whether the task was complete here when asked,
  // and the bytes sent.
  cache?: "hit" | "partial" | "miss";
  bytes?: number;
}

const TRAILERS = ["x-damselfly-bytes-from-peers", "x-damselfly-bytes-from-origin", "x-damselfly-bytes-fallback"] as const;

// The mirror's blobs and the manager's preheat jobs describe a blob alike.
export const downloadOf = (obj: Pick<P2PObject, "url" | "headers" | "digest">): Download => blobDownload(obj);

// Serves an object from the local store / swarm, as a 200 or a 206. If P2P
// fails or stalls after the headers went out, the rest comes straight from
// the origin at the byte where it stopped, so the client sees one response.
export async function serveFromP2P(res: ServerResponse, obj: P2PObject, deps: P2PDeps): Promise<ServeResult> {
  return new P2PResponse(res, obj, deps).serve();
}

type Cache = "hit" | "partial" | "miss";

// One response of serveFromP2P.
class P2PResponse {
  private readonly started = Date.now();
  private readonly log: Logger;
  private readonly clientGone = new AbortController();
  private readonly download: Download;
  private handle!: TaskHandle;
  // The task as first opened (a restart after a corrupt piece may hand back
  // a new handle; its stats are what the trailers report).
  private task!: LocalTask;
  // Held for the whole response: the disk GC never evicts a task being served.
  private held: { release(): void } | undefined;
  // The bytes [start, end) of the object go out; pos: the next one.
  private start = 0;
  private end = 0;
  private pos = 0;
  private status = 200;
  // The next chunk is read from the store while the socket drains the
  // previous one (at most two in flight), not after.
  private draining: Promise<void> | undefined;
  // Only a whole-object response can be checked against the digest; ranges
  // rely on the per-piece CRCs (see checkBeforeLast).
  private expected: Digest | undefined;
  private hasher: Digester | undefined;
  // Chunk buffers (a piece, or 4 MiB of a larger one: piece-chunks.ts) come
  // from the daemon's pool and go back once the socket is done with them: a
  // response of gigabytes would otherwise allocate one per chunk. While the
  // response lasts, the pool keeps a few of them even when they are larger
  // than its cap.
  private unreserve: (() => void) | undefined;
  private readonly chunkPool: ChunkPool = {
    get: (size: number): Buffer => {
      this.unreserve ??= buffers.reserve(size, 4);
      return buffers.get(size);
    },
    put: (buf: Buffer): void => buffers.put(buf),
  };

  constructor(
    private readonly res: ServerResponse,
    private readonly obj: P2PObject,
    private readonly deps: P2PDeps,
  ) {
    this.log = deps.logger;
    this.download = downloadOf(obj);
  }

  private readonly onClose = (): void => {
    if (!this.res.writableFinished) this.clientGone.abort(new DamselflyError("DF_ERR_CANCELLED", "client went away"));
  };

  async serve(): Promise<ServeResult> {
    this.res.on("close", this.onClose);
    try {
      const opened = await this.open();
      if ("declined" in opened) return opened;
      if (!this.writeHead(opened.size, opened.cache)) return {};
      return await this.body(opened.cache);
    } finally {
      this.res.off("close", this.onClose);
      this.held?.release();
      this.unreserve?.();
    }
  }

  // Starts (or joins) the task's download and learns the object's size.
  private async open(): Promise<{ declined: DamselflyError } | { size: number; cache: Cache }> {
    const { obj, deps } = this;
    let size = obj.size;
    try {
      this.handle = await deps.tasks.ensure(this.download, undefined, { rateLimit: obj.rateLimit ?? 0, trace: deps.span, hold: true });
      const task = (this.task = this.handle.task);
      deps.span?.setAttribute("damselfly.task_id", task.id);
      this.held = task;
      // What this node held when the request came: pieces that arrive while
      // the response waits for the object's length do not make it a hit.
      const cache = task.done ? "hit" : task.pieces.size > 0 ? "partial" : "miss";
      if (size < 0 || !task.infoKnown) {
        // The registry did not give a length (redirect): the swarm will.
        if (size < 0) await waitForInfo(task, AbortSignal.any([this.clientGone.signal, AbortSignal.timeout(deps.stallTimeoutMs)]));
        if (size < 0) size = task.meta.contentLength;
      } else if (task.meta.contentLength !== size) {
        return { declined: new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `stored size ${task.meta.contentLength} differs from the registry's ${size}`) };
      }
      return { size, cache };
    } catch (err) {
      return { declined: DamselflyError.from(err) };
    }
  }

  // Sends the status line and headers; false when the range cannot be
  // satisfied (a 416 went out instead).
  private writeHead(size: number, cache: Cache): boolean {
    const { obj, task, res } = this;
    this.end = size;
    const headers: Record<string, string | number> = {
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
      "x-damselfly-task-id": task.id,
      "x-damselfly-peer-id": this.deps.tasks.peerIdOf(task.id),
      "x-damselfly-cache": cache,
    };
    if (obj.digest) {
      headers["docker-content-digest"] = obj.digest;
      headers["etag"] = `"${obj.digest}"`;
    }
    if (obj.range) {
      const r = resolveRange(obj.range, size);
      if (!r) {
        res.writeHead(416, { "content-range": `bytes */${size}`, "x-damselfly-task-id": task.id, "content-length": 0 });
        res.end();
        return false;
      }
      ({ start: this.start, end: this.end } = r);
      this.status = 206;
      headers["content-range"] = `bytes ${this.start}-${this.end - 1}/${size}`;
    }
    if (obj.trailers) headers["trailer"] = TRAILERS.join(", ");
    else headers["content-length"] = this.end - this.start;
    res.writeHead(this.status, headers);
    this.pos = this.start;
    // The daemon hashes a content-addressed task once, in order, as it
    // downloads: a response relies on that check and holds its last bytes
    // until it passes. It hashes by itself only what the task's check does
    // not cover: a stored task that was never hashed, or a response stitched
    // together with bytes from the origin.
    this.expected = obj.digest && this.status === 200 ? parseDigest(obj.digest) : undefined;
    if (this.expected && task.done && !task.meta.digestVerified) this.hasher = new Digester(this.expected.algorithm);
    return true;
  }

  // The bytes from the swarm, the rest from the origin if P2P fails.
  private async body(cache: Cache): Promise<ServeResult> {
    let p2pError: DamselflyError | undefined;
    if (this.end > this.start) {
      const outcome = await this.fromSwarm();
      if (outcome === "stop") return {};
      p2pError = outcome;
    } else await this.checkBeforeLast();
    let fromOriginDirect = 0;
    if (p2pError) {
      this.log.warn(
        { taskId: this.task.id, at: this.pos, code: p2pError.code, err: p2pError.message },
        "proxy: P2P failed mid-response, continuing from the origin",
      );
      try {
        await this.hashSentPrefix();
        fromOriginDirect = await this.fromOrigin();
      } catch (err) {
        const e = DamselflyError.from(err);
        if (e.code === "DF_ERR_DIGEST_MISMATCH") return await this.digestFailed(e);
        if (!this.clientGone.signal.aborted)
          this.log.warn({ taskId: this.task.id, at: this.pos, code: e.code, err: e.message }, "proxy: origin fallback failed; response cut short");
        this.res.destroy();
        return {};
      }
    }
    if (this.draining) await this.draining;
    if (this.clientGone.signal.aborted) return {};
    this.finish(cache, fromOriginDirect);
    return { cache, bytes: this.end - this.start };
  }

  // Streams the range from the task; returns why P2P could not finish it
  // (undefined: it did), or "stop" when the response is over.
  private async fromSwarm(): Promise<DamselflyError | undefined | "stop"> {
    const { deps, task } = this;
    const stall = new Stall(deps.stallTimeoutMs);
    const restart = async () => {
      this.handle = await deps.tasks.ensure(this.download, task.id, { rateLimit: this.obj.rateLimit ?? 0 });
    };
    try {
      const signal = AbortSignal.any([this.clientGone.signal, stall.signal]);
      for await (const buf of readTaskChunks(task, signal, restart, this.start, this.end, this.chunkPool)) {
        stall.reset();
        await this.emit(buf);
      }
    } catch (err) {
      const e = DamselflyError.from(err);
      if (e.code === "DF_ERR_DIGEST_MISMATCH") {
        await this.digestFailed(e);
        return "stop";
      }
      if (this.clientGone.signal.aborted) return "stop";
      return e;
    } finally {
      stall.clear();
    }
    if (this.pos < this.end) return new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `the swarm's copy ends at byte ${this.pos} of ${this.end}`);
    return undefined;
  }

  private async emit(buf: Buffer): Promise<void> {
    this.hasher?.update(buf);
    // A client must never receive a complete response with wrong content.
    if (this.pos + buf.length === this.end) await this.checkBeforeLast();
    if (this.draining) await this.draining;
    this.draining = undefined;
    if (this.clientGone.signal.aborted) throw this.clientGone.signal.reason;
    if (!this.res.write(buf, () => buffers.put(buf))) this.draining = drainOrClose(this.res);
    this.pos += buf.length;
  }

  private async checkBeforeLast(): Promise<void> {
    const { expected, task } = this;
    if (!expected) return;
    if (this.hasher) {
      const actual = this.hasher.digest();
      if (actual.hex !== expected.hex) throw new DamselflyError("DF_ERR_DIGEST_MISMATCH", `content of ${this.obj.digest} hashes to ${formatDigest(actual)}`);
    } else await waitUntil(task, () => task.meta.digestVerified === true, this.clientGone.signal);
  }

  // Switches to hashing here: the bytes sent so far are re-read from the
  // store (they came from it), the rest is hashed as it arrives. A task that
  // failed may have lost them (a full disk removes it): the origin has them.
  private async hashSentPrefix(): Promise<void> {
    if (!this.expected || this.hasher) return;
    const pos = this.pos;
    try {
      const h = new Digester(this.expected.algorithm);
      const chunk = Buffer.allocUnsafe(Math.min(4 * 1024 * 1024, Math.max(1, pos)));
      for (let at = 0; at < pos; ) {
        const n = Math.min(chunk.length, pos - at);
        h.update(await this.task.read(at, n, chunk.subarray(0, n)));
        at += n;
      }
      this.hasher = h;
    } catch (err) {
      if (this.clientGone.signal.aborted) throw err;
      this.log.warn({ taskId: this.task.id, bytes: pos, err: (err as Error).message }, "proxy: sent bytes gone from the store; hashing them from the origin");
      const h = new Digester(this.expected.algorithm);
      for await (const b of originRange(this.deps.source, this.obj, 0, pos, this.clientGone.signal)) h.update(b);
      this.hasher = h;
    }
  }

  // Sends [pos, end) from the origin; returns the bytes sent.
  private async fromOrigin(): Promise<number> {
    let sent = 0;
    for await (const b of originRange(this.deps.source, this.obj, this.pos, this.end, this.clientGone.signal)) {
      await this.emit(b);
      sent += b.length;
    }
    return sent;
  }

  private finish(cache: Cache, fromOriginDirect: number): void {
    const stats = this.handle.run?.stats;
    const bytesFromPeers = stats?.bytesFromPeers ?? 0;
    const bytesFromSource = stats?.bytesFromSource ?? 0;
    if (this.obj.trailers)
      this.res.addTrailers({ [TRAILERS[0]]: String(bytesFromPeers), [TRAILERS[1]]: String(bytesFromSource), [TRAILERS[2]]: String(fromOriginDirect) });
    this.res.end();
    const fields = {
      taskId: this.task.id,
      status: this.status,
      bytes: this.end - this.start,
      cache,
      bytesFromPeers,
      bytesFromSource,
      fallbackBytes: fromOriginDirect,
      ms: Date.now() - this.started,
    };
    this.log.info(fields, "proxy: served from P2P");
  }

  private async digestFailed(e: DamselflyError): Promise<ServeResult> {
    // Cut the connection before the last byte so the client retries, and
    // drop the bad copy so the retry fetches it afresh.
    this.log.error({ taskId: this.task.id, code: e.code, err: e.message }, "proxy: blob content does not match its digest; discarded");
    this.res.destroy();
    await this.deps.tasks.discard(this.task.id, e);
    return {};
  }
}

// Aborts when no bytes arrived for `ms`: a swarm that makes no progress is
// worse than going to the origin.
class Stall {
  private readonly ctl = new AbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {
    this.reset();
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  reset(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.ctl.abort(new DamselflyError("DF_ERR_TIMEOUT", `P2P made no progress for ${this.ms} ms`)), this.ms);
    this.timer.unref();
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
