import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl, HandlerContext } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import { digestMismatch, parseDigest, Digester, formatDigest } from "../../common/digest.js";
import { isTaskId, parseSourceUrl } from "../../common/task-id.js";
import { isHeaderName, isHeaderValue } from "../../common/http-headers.js";
import type { Logger } from "../../common/logger.js";
import { SpanKind, spanUrl, startSpan, traceOfHeaders, type Span } from "../../common/trace.js";
import { checkClusterToken, daemonv1, toConnectError, type Download } from "../../protocol/index.js";
import type { DownloadManager, TaskHandle } from "../download-manager.js";
import type { RequestLimits } from "../rate-limits.js";
import type { Storage } from "../storage/storage.js";
import type { DiskGc } from "../storage/gc.js";
import { verifiedStorePath } from "./store-delivery.js";
import { cacheHandlers } from "./cache-service.js";
import { readTaskRange } from "./task-reader.js";
import type { DaemonMetrics } from "../metrics.js";

const PROGRESS_MS = 250;
const CHUNK = 1024 * 1024;
// A client given the store path links or copies the data file right after
// the stream ends (milliseconds): the task is kept that long past it. One
// that comes later and finds the file gone has the task streamed instead.
const STORE_PATH_GRACE_MS = 2_000;

type Event = MessageInitShape<typeof daemonv1.DownloadTaskResponseSchema>["event"];

function validateDownload(d: Download | undefined): Download {
  if (!d) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "download is required");
  parseSourceUrl(d.url);
  if (d.digest) parseDigest(d.digest);
  for (const [k, v] of Object.entries(d.headers)) {
    if (!isHeaderName(k) || !isHeaderValue(v)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `invalid header ${JSON.stringify(k)}`);
  }
  return d;
}

// The daemon's local API: `get` downloads through it, schedulers trigger seed
// downloads through it.
export function daemonService(deps: { tasks: DownloadManager; storage: Storage; logger: Logger; clusterToken?: string | undefined; gc: DiskGc; metrics?: DaemonMetrics; shuttingDown?: () => boolean }): ServiceImpl<typeof daemonv1.DaemonService> {
  const { tasks, logger } = deps;
  // A daemon draining for exit takes no new downloads: the caller should
  // use another daemon (or retry once this one is back).
  const refuseWhenShuttingDown = () => {
    if (deps.shuttingDown?.()) throw new DamselflyError("DF_ERR_SHUTTING_DOWN", "the daemon is shutting down and takes no new downloads");
  };
  return {
    ...cacheHandlers(deps),

    async *downloadTask(req, ctx) {
      const span = startSpan("DownloadTask", { kind: SpanKind.SERVER, parent: traceOfHeaders(ctx.requestHeader), attributes: { "url.full": spanUrl(req.download?.url ?? "") } });
      try {
        refuseWhenShuttingDown();
        yield* download(req, ctx, span);
        span.setAttribute("damselfly.result", "ok");
      } catch (err) {
        span.setError(err).setAttribute("damselfly.result", DamselflyError.from(err).code);
        throw toConnectError(err);
      } finally {
        span.end();
      }
    },

    async triggerTask(req, ctx) {
      const span = startSpan("TriggerTask", { kind: SpanKind.SERVER, parent: traceOfHeaders(ctx.requestHeader), attributes: { "damselfly.task_id": req.taskId } });
      try {
        refuseWhenShuttingDown();
        const d = validateDownload(req.download);
        const id = tasks.taskIdOf(d);
        if (req.taskId && req.taskId !== id) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `task id ${req.taskId} does not match the download (${id})`);
        // Seed triggers fill the swarm ahead of demand on this host: they
        // yield to this host's own real-time pulls.
        const h = await tasks.ensure(d, id, { background: true, trace: span });
        span.setAttribute("damselfly.running", h.run !== undefined);
        logger.info({ taskId: id, running: h.run !== undefined }, "task triggered by the scheduler");
        return { taskId: id };
      } catch (err) {
        span.setError(err);
        throw toConnectError(err);
      } finally {
        span.end();
      }
    },

    async deleteTask(req, ctx) {
      try {
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        if (!isTaskId(req.taskId)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "task_id must be 64 hex characters");
        const held = deps.storage.get(req.taskId) !== undefined || tasks.isActive(req.taskId);
        if (!held) return { deleted: false };
        if (req.refuseInUse) {
          // `cache rm`: only a task nothing holds, checked and removed in one go.
          const t = deps.storage.get(req.taskId);
          if (!t) return { deleted: false };
          const users = t.inUse;
          if (users > 0) throw new DamselflyError("DF_ERR_TASK_IN_USE", `task ${req.taskId} is being downloaded, read or uploaded (${users} holder(s)); retry later or use --force`);
          const { removed, freed } = await tasks.removeIdle([t]);
          if (removed.length === 0) throw new DamselflyError("DF_ERR_TASK_IN_USE", `task ${req.taskId} is in use; retry later or use --force`);
          logger.info({ taskId: req.taskId, bytesFreed: freed }, "task removed from the cache");
          return { deleted: true, freedBytes: BigInt(freed) };
        }
        const freed = await tasks.discard(req.taskId, new DamselflyError("DF_ERR_CANCELLED", "task deleted"));
        logger.info({ taskId: req.taskId, bytesFreed: freed }, "task deleted");
        return { deleted: true, freedBytes: BigInt(freed) };
      } catch (err) {
        throw toConnectError(err);
      }
    },

    async statTask(req) {
      const t = deps.storage.get(req.taskId);
      if (!t) throw toConnectError(new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${req.taskId} is not on this daemon`));
      return {
        taskId: t.id,
        contentLength: BigInt(Math.max(0, t.meta.contentLength)),
        pieceLength: BigInt(t.meta.pieceLength),
        totalPieces: Math.max(0, t.totalPieces),
        finishedPieces: t.pieces.size,
        done: t.done,
      };
    },
  };

  // The task is held (never evicted) for the whole call, and no longer once
  // the client is gone: a generator suspended on a write to a closed stream
  // may never reach its finally.
  async function* download(req: daemonv1.DownloadTaskRequest, ctx: HandlerContext, span: Span): AsyncGenerator<daemonv1.DownloadTaskResponse> {
    const started = Date.now();
    const d = validateDownload(req.download);
    const limits = { rateLimit: Number(req.rateLimit), background: req.background };
    const handle = await tasks.ensure(d, undefined, { ...limits, trace: span, hold: true });
    let held = true;
    const release = (): void => {
      if (held) handle.task.release();
      held = false;
      ctx.signal.removeEventListener("abort", release);
    };
    if (ctx.signal.aborted) release();
    else ctx.signal.addEventListener("abort", release, { once: true });
    try {
      yield* serve(req, ctx, d, handle, started, span, limits);
    } finally {
      release();
    }
  }

  async function* serve(req: daemonv1.DownloadTaskRequest, ctx: HandlerContext, d: Download, first: TaskHandle, started: number, span: Span, limits: RequestLimits): AsyncGenerator<daemonv1.DownloadTaskResponse> {
    const expected = d.digest ? parseDigest(d.digest) : undefined;
    const signals = [ctx.signal];
    if (req.timeoutMs > 0n) signals.push(AbortSignal.timeout(Number(req.timeoutMs)));
    const signal = AbortSignal.any(signals);
    let handle: TaskHandle = first;
    const task = handle.task;
    const localHit = task.done;
    span.setAttribute("damselfly.task_id", task.id).setAttribute("damselfly.local_hit", localHit);
    const bytesLocal = task.finishedBytes;
    const restart = async () => {
      handle = await tasks.ensure(d, task.id, limits);
    };
    const ev = (event: Event) => create(daemonv1.DownloadTaskResponseSchema, { event });
    yield ev({
      case: "started",
      value: { taskId: task.id, peerId: tasks.peerIdOf(task.id), contentLength: BigInt(Math.max(0, task.meta.contentLength)), pieceLength: BigInt(task.meta.pieceLength), contentLengthKnown: task.infoKnown, localHit },
    });
    const progress = () =>
      ev({
        case: "progress",
        value: {
          completedBytes: BigInt(task.finishedBytes),
          bytesFromPeers: BigInt(handle.run?.stats.bytesFromPeers ?? 0),
          bytesFromSource: BigInt(handle.run?.stats.bytesFromSource ?? 0),
          contentLength: BigInt(Math.max(0, task.meta.contentLength)),
        },
      });

    let digest = "";
    let storePath = "";
    if (req.delivery === daemonv1.Delivery.STORE_PATH) {
      // Progress events flow while the task completes; the client checks the
      // digest on the file it makes.
      const work = verifiedStorePath(task, signal, restart);
      let done = false;
      work.then(() => (done = true), () => (done = true));
      while (!done) {
        await Promise.race([work.catch(() => undefined), sleep(PROGRESS_MS)]);
        if (!done) yield progress();
      }
      storePath = await work;
      task.holdFor(STORE_PATH_GRACE_MS);
      // Hashed while it downloaded: tell the client, which then need not.
      if (expected && task.meta.contentDigest === formatDigest(expected)) digest = task.meta.contentDigest;
    } else {
      const hasher = expected ? new Digester(expected.algorithm) : undefined;
      let offset = 0;
      let last = 0;
      for await (const buf of readTaskRange(task, signal, restart)) {
        for (let i = 0; i < buf.length; i += CHUNK) {
          const data = buf.subarray(i, Math.min(buf.length, i + CHUNK));
          hasher?.update(data);
          yield ev({ case: "chunk", value: { offset: BigInt(offset), data } });
          offset += data.length;
        }
        if (Date.now() - last > PROGRESS_MS) {
          last = Date.now();
          yield progress();
        }
      }
      if (hasher && expected) {
        const actual = hasher.digest();
        digest = formatDigest(actual);
        if (actual.hex !== expected.hex) throw digestMismatch(expected, actual);
      }
    }
    yield progress();
    const stats = handle.run?.stats;
    if (localHit) deps.metrics?.localBytes(task.meta.contentLength);
    if (span.recording) {
      span
        .setAttribute("damselfly.content_length", task.meta.contentLength)
        .setAttribute("damselfly.bytes_from_peers", stats?.bytesFromPeers ?? 0)
        .setAttribute("damselfly.bytes_from_origin", stats?.bytesFromSource ?? 0)
        .setAttribute("damselfly.bytes_local", bytesLocal)
        .setAttribute("damselfly.back_to_source", stats?.backToSource ?? false);
    }
    logger.info({ taskId: task.id, ms: Date.now() - started, localHit, delivery: storePath ? "store-path" : "stream" }, "download served");
    yield ev({
      case: "finished",
      value: {
        taskId: task.id,
        contentLength: BigInt(task.meta.contentLength),
        bytesFromPeers: BigInt(stats?.bytesFromPeers ?? 0),
        bytesFromSource: BigInt(stats?.bytesFromSource ?? 0),
        bytesLocal: BigInt(bytesLocal),
        digest,
        storePath,
        elapsedMs: BigInt(Date.now() - started),
        backToSource: stats?.backToSource ?? false,
        schedulerUnavailable: stats?.schedulerUnavailable ?? false,
      },
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
