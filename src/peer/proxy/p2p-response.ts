import type { ServerResponse } from "node:http";
import { DamselflyError } from "../../common/errors.js";
import { Digester, parseDigest, formatDigest } from "../../common/digest.js";
import type { Logger } from "../../common/logger.js";
import type { Span } from "../../common/trace.js";
import { blobDownload, type Download } from "../../protocol/index.js";
import type { DownloadManager, TaskHandle } from "../download-manager.js";
import type { HttpSource } from "../source/http-source.js";
import { readTaskRange, waitForInfo, waitUntil } from "../api/task-reader.js";
import { drainOrClose } from "../../common/streams.js";
import { BufferPool } from "../upload/buffer-pool.js";
import { resolveRange, type ByteRangeSpec } from "./range.js";

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
  const started = Date.now();
  const log = deps.logger;
  const clientGone = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) clientGone.abort(new DamselflyError("DF_ERR_CANCELLED", "client went away"));
  };
  res.on("close", onClose);
  // Held for the whole response: the disk GC never evicts a task being served.
  let held: { release(): void } | undefined;
  try {
    const download = downloadOf(obj);
    let handle: TaskHandle;
    let size = obj.size;
    // What this node held when the request came: pieces that arrive while
    // the response waits for the object's length do not make it a hit.
    let cache: "hit" | "partial" | "miss";
    try {
      handle = await deps.tasks.ensure(download, undefined, { rateLimit: obj.rateLimit ?? 0, trace: deps.span, hold: true });
      deps.span?.setAttribute("damselfly.task_id", handle.task.id);
      held = handle.task;
      cache = handle.task.done ? "hit" : handle.task.pieces.size > 0 ? "partial" : "miss";
      if (size < 0 || !handle.task.infoKnown) {
        // The registry did not give a length (redirect): the swarm will.
        if (size < 0) await waitForInfo(handle.task, AbortSignal.any([clientGone.signal, AbortSignal.timeout(deps.stallTimeoutMs)]));
        if (size < 0) size = handle.task.meta.contentLength;
      } else if (handle.task.meta.contentLength !== size) {
        return { declined: new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `stored size ${handle.task.meta.contentLength} differs from the registry's ${size}`) };
      }
    } catch (err) {
      return { declined: DamselflyError.from(err) };
    }
    const task = handle.task;
    let start = 0;
    let end = size;
    const headers: Record<string, string | number> = {
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
      "x-damselfly-task-id": task.id,
      "x-damselfly-peer-id": deps.tasks.peerIdOf(task.id),
      "x-damselfly-cache": cache,
    };
    if (obj.digest) {
      headers["docker-content-digest"] = obj.digest;
      headers["etag"] = `"${obj.digest}"`;
    }
    let status = 200;
    if (obj.range) {
      const r = resolveRange(obj.range, size);
      if (!r) {
        res.writeHead(416, { "content-range": `bytes */${size}`, "x-damselfly-task-id": task.id, "content-length": 0 });
        res.end();
        return {};
      }
      ({ start, end } = r);
      status = 206;
      headers["content-range"] = `bytes ${start}-${end - 1}/${size}`;
    }
    if (obj.trailers) headers["trailer"] = TRAILERS.join(", ");
    else headers["content-length"] = end - start;
    res.writeHead(status, headers);

    // Only a whole-object response can be checked against the digest; ranges
    // rely on the per-piece CRCs. The daemon hashes a content-addressed task
    // once, in order, as it downloads: a response relies on that check and
    // holds its last bytes until it passes. It hashes by itself only what the
    // task's check does not cover: a stored task that was never hashed, or a
    // response stitched together with bytes from the origin.
    const expected = obj.digest && status === 200 ? parseDigest(obj.digest) : undefined;
    let hasher = expected && task.done && !task.meta.digestVerified ? new Digester(expected.algorithm) : undefined;
    const checkBeforeLast = async (): Promise<void> => {
      if (!expected) return;
      if (hasher) {
        const actual = hasher.digest();
        if (actual.hex !== expected.hex) throw new DamselflyError("DF_ERR_DIGEST_MISMATCH", `content of ${obj.digest} hashes to ${formatDigest(actual)}`);
      } else await waitUntil(task, () => task.meta.digestVerified === true, clientGone.signal);
    };
    // Piece buffers are reused once the socket is done with them: a response
    // of gigabytes would otherwise allocate one per piece.
    let pool: BufferPool | undefined;
    const piecePool = { get: () => (pool ??= new BufferPool(task.meta.pieceLength, 4)).get() };
    let pos = start;
    // The next piece is read from the store while the socket drains the
    // previous one (at most two in flight), not after.
    let draining: Promise<void> | undefined;
    const emit = async (buf: Buffer): Promise<void> => {
      hasher?.update(buf);
      // A client must never receive a complete response with wrong content.
      if (pos + buf.length === end) await checkBeforeLast();
      if (draining) await draining;
      draining = undefined;
      if (clientGone.signal.aborted) throw clientGone.signal.reason;
      if (!res.write(buf, () => pool?.release(buf))) draining = drainOrClose(res);
      pos += buf.length;
    };
    // Switches to hashing here: the bytes sent so far are re-read from the
    // store (they came from it), the rest is hashed as it arrives.
    const hashSentPrefix = async (): Promise<void> => {
      if (!expected || hasher) return;
      const h = new Digester(expected.algorithm);
      const chunk = Buffer.allocUnsafe(Math.min(4 * 1024 * 1024, Math.max(1, pos)));
      for (let at = 0; at < pos; ) {
        const n = Math.min(chunk.length, pos - at);
        h.update(await task.read(at, n, chunk.subarray(0, n)));
        at += n;
      }
      hasher = h;
    };

    let p2pError: DamselflyError | undefined;
    if (end > start) {
      const stall = new Stall(deps.stallTimeoutMs);
      const restart = async () => {
        handle = await deps.tasks.ensure(download, task.id, { rateLimit: obj.rateLimit ?? 0 });
      };
      try {
        for await (const buf of readTaskRange(task, AbortSignal.any([clientGone.signal, stall.signal]), restart, start, end, piecePool)) {
          stall.reset();
          await emit(buf);
        }
      } catch (err) {
        const e = DamselflyError.from(err);
        if (e.code === "DF_ERR_DIGEST_MISMATCH") return await digestFailed(e);
        if (clientGone.signal.aborted) return {};
        p2pError = e;
      } finally {
        stall.clear();
      }
      if (!p2pError && pos < end) p2pError = new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `the swarm's copy ends at byte ${pos} of ${end}`);
    } else await checkBeforeLast();

    let fromOriginDirect = 0;
    if (p2pError) {
      log.warn({ taskId: task.id, at: pos, code: p2pError.code, err: p2pError.message }, "proxy: P2P failed mid-response, continuing from the origin");
      try {
        await hashSentPrefix();
        fromOriginDirect = await continueFromOrigin(pos, end, emit);
      } catch (err) {
        const e = DamselflyError.from(err);
        if (e.code === "DF_ERR_DIGEST_MISMATCH") return await digestFailed(e);
        if (!clientGone.signal.aborted) log.warn({ taskId: task.id, at: pos, code: e.code, err: e.message }, "proxy: origin fallback failed; response cut short");
        res.destroy();
        return {};
      }
    }
    if (draining) await draining;
    if (clientGone.signal.aborted) return {};
    const stats = handle.run?.stats;
    if (obj.trailers) {
      res.addTrailers({
        [TRAILERS[0]]: String(stats?.bytesFromPeers ?? 0),
        [TRAILERS[1]]: String(stats?.bytesFromSource ?? 0),
        [TRAILERS[2]]: String(fromOriginDirect),
      });
    }
    res.end();
    log.info(
      {
        taskId: task.id,
        status,
        bytes: end - start,
        cache,
        bytesFromPeers: stats?.bytesFromPeers ?? 0,
        bytesFromSource: stats?.bytesFromSource ?? 0,
        fallbackBytes: fromOriginDirect,
        ms: Date.now() - started,
      },
      "proxy: served from P2P",
    );
    return { cache, bytes: end - start };

    async function digestFailed(e: DamselflyError): Promise<ServeResult> {
      // Cut the connection before the last byte so the client retries, and
      // drop the bad copy so the retry fetches it afresh.
      log.error({ taskId: task.id, code: e.code, err: e.message }, "proxy: blob content does not match its digest; discarded");
      res.destroy();
      await deps.tasks.discard(task.id, e);
      return {};
    }

    async function continueFromOrigin(from: number, to: number, write: (b: Buffer) => Promise<void>): Promise<number> {
      if (from >= to) return 0;
      const r = await deps.source.fetch(obj.url, obj.headers, { start: from, end: to - 1 }, clientGone.signal);
      let skip = r.ranged ? 0 : from;
      let sent = 0;
      try {
        for await (const chunk of r.body) {
          let b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          if (skip > 0) {
            const n = Math.min(skip, b.length);
            skip -= n;
            b = b.subarray(n);
          }
          if (b.length > to - pos) b = b.subarray(0, to - pos);
          if (b.length === 0) continue;
          await write(b);
          sent += b.length;
          if (pos >= to) break;
        }
      } finally {
        r.body.destroy();
      }
      if (pos < to) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `origin body ended at byte ${pos} of ${to}`);
      return sent;
    }
  } finally {
    res.off("close", onClose);
    held?.release();
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
