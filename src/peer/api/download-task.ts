import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import { digestMismatch, parseDigest, Digester, formatDigest, type Digest } from "../../common/digest.js";
import { parseSourceUrl } from "../../common/task-id.js";
import { isS3Url } from "../../common/s3/s3-config.js";
import { resolveS3Download, type S3Signing } from "../source/s3-origin.js";
import { isHeaderName, isHeaderValue } from "../../common/http-headers.js";
import type { Logger } from "../../common/logger.js";
import { SpanKind, spanUrl, startSpan, traceOfHeaders, type Span } from "../../common/trace.js";
import { cacheDigest, cacheDownload, daemonv1, isCacheUrl, toConnectError, type Download } from "../../protocol/index.js";
import type { DownloadManager, TaskHandle } from "../download-manager.js";
import type { RequestLimits } from "../rate-limits.js";
import type { LocalTask } from "../storage/local-task.js";
import type { DaemonMetrics } from "../metrics.js";
import { verifiedStorePath } from "./store-delivery.js";
import { checkTaskTtl } from "./import-task.js";
import { readTaskChunks } from "./piece-chunks.js";
import { checkDigestRead, checkSignedRead } from "./download-access.js";
import type { BlobAccess } from "../proxy/blob-access.js";

const PROGRESS_MS = 250;
const CHUNK = 1024 * 1024;
// One stream's read buffers, one per size, reused: Connect serializes each
// chunk event (a copy) before it asks for the next, and a buffer is read
// into again only after all of its events were taken.
function reusedBuffers(): { get(size: number): Buffer; put(): void } {
  const bufs = new Map<number, Buffer>();
  return {
    get(size) {
      let b = bufs.get(size);
      if (!b) bufs.set(size, (b = Buffer.allocUnsafe(size)));
      return b;
    },
    put: () => undefined,
  };
}
// A client given the store path links or copies the data file right after
// the stream ends (milliseconds): the task is kept that long past it. One
// that comes later and finds the file gone has the task streamed instead.
const STORE_PATH_GRACE_MS = 2_000;

type Event = MessageInitShape<typeof daemonv1.DownloadTaskResponseSchema>["event"];
type Response = daemonv1.DownloadTaskResponse;

export interface DownloadTaskDeps {
  tasks: DownloadManager;
  logger: Logger;
  metrics?: DaemonMetrics | undefined;
  // Throws when the daemon takes no new downloads.
  refuseWhenShuttingDown(): void;
  access?: BlobAccess | undefined;
  // Where s3:// downloads that arrive unsigned go (the daemon's defaults).
  s3?: S3Signing | undefined;
}

// `s3` allows an s3:// URL (a DownloadTask, which signs it; a scheduler's
// trigger carries the presigned URL).
export function validateDownload(d: Download | undefined, s3 = false): Download {
  if (!d) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "download is required");
  // An imported task: only its digest counts, and it never goes to an origin.
  if (isCacheUrl(d.url)) return cacheDownload(cacheDigest(d.digest));
  if (!(s3 && isS3Url(d.url))) parseSourceUrl(d.url);
  if (d.digest) parseDigest(d.digest);
  for (const [k, v] of Object.entries(d.headers)) {
    if (!isHeaderName(k) || !isHeaderValue(v)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `invalid header ${JSON.stringify(k)}`);
  }
  return d;
}

// DownloadTask: `get` downloads through it, as a stream of events (started,
// progress, the bytes or the store path, finished).
export async function* downloadTask(deps: DownloadTaskDeps, req: daemonv1.DownloadTaskRequest, ctx: HandlerContext): AsyncGenerator<Response> {
  const span = startSpan("DownloadTask", {
    kind: SpanKind.SERVER,
    parent: traceOfHeaders(ctx.requestHeader),
    attributes: { "url.full": spanUrl(req.download?.url ?? "") },
  });
  try {
    deps.refuseWhenShuttingDown();
    yield* download(deps, req, ctx, span);
    span.setAttribute("damselfly.result", "ok");
  } catch (err) {
    span.setError(err).setAttribute("damselfly.result", DamselflyError.from(err).code);
    throw toConnectError(err);
  } finally {
    span.end();
  }
}

// The task is held (never evicted) for the whole call, and no longer once
// the client is gone: a generator suspended on a write to a closed stream
// may never reach its finally.
async function* download(deps: DownloadTaskDeps, req: daemonv1.DownloadTaskRequest, ctx: HandlerContext, span: Span): AsyncGenerator<Response> {
  const started = Date.now();
  const given = validateDownload(req.download, true);
  // The caller's own signature decides before any copy is served (an s3://
  // URL this daemon signs itself is checked by its own signed HEAD).
  await checkSignedRead(deps.access, given, ctx.signal);
  const d = await resolveS3Download(given, deps.s3);
  await checkDigestRead(deps.access, d, ctx.signal);
  const limits = { rateLimit: Number(req.rateLimit), background: req.background };
  const handle = await deps.tasks.ensure(d, undefined, { ...limits, trace: span, hold: true });
  if (req.taskTtlMs > 0n) await handle.task.setTtl(checkTaskTtl(req.taskTtlMs));
  let held = true;
  const release = (): void => {
    if (held) handle.task.release();
    held = false;
    ctx.signal.removeEventListener("abort", release);
  };
  if (ctx.signal.aborted) release();
  else ctx.signal.addEventListener("abort", release, { once: true });
  try {
    yield* new DownloadCall(deps, req, ctx, d, handle, started, span, limits).events();
  } finally {
    release();
  }
}

const ev = (event: Event): Response => create(daemonv1.DownloadTaskResponseSchema, { event });

// One DownloadTask call once its task is held.
class DownloadCall {
  private readonly task: LocalTask;
  private readonly signal: AbortSignal;
  private readonly expected: Digest | undefined;
  private readonly localHit: boolean;
  // Bytes stored here before the call.
  private readonly bytesLocal: number;

  constructor(
    private readonly deps: DownloadTaskDeps,
    private readonly req: daemonv1.DownloadTaskRequest,
    ctx: HandlerContext,
    private readonly d: Download,
    // A restart (a stored piece failed its check) may hand back another run.
    private handle: TaskHandle,
    private readonly started: number,
    private readonly span: Span,
    private readonly limits: RequestLimits,
  ) {
    this.expected = d.digest ? parseDigest(d.digest) : undefined;
    const signals = [ctx.signal];
    if (req.timeoutMs > 0n) signals.push(AbortSignal.timeout(Number(req.timeoutMs)));
    this.signal = AbortSignal.any(signals);
    this.task = handle.task;
    this.localHit = this.task.done;
    this.bytesLocal = this.task.finishedBytes;
  }

  private readonly restart = async (): Promise<void> => {
    this.handle = await this.deps.tasks.ensure(this.d, this.task.id, this.limits);
  };

  async *events(): AsyncGenerator<Response> {
    const { task, localHit } = this;
    this.span.setAttribute("damselfly.task_id", task.id).setAttribute("damselfly.local_hit", localHit);
    yield ev({
      case: "started",
      value: {
        taskId: task.id,
        peerId: this.deps.tasks.peerIdOf(task.id),
        contentLength: BigInt(Math.max(0, task.meta.contentLength)),
        pieceLength: BigInt(task.meta.pieceLength),
        contentLengthKnown: task.infoKnown,
        localHit,
      },
    });
    const delivered = this.req.delivery === daemonv1.Delivery.STORE_PATH ? yield* this.storePath() : { storePath: "", digest: yield* this.stream() };
    yield this.progress();
    yield this.finished(delivered.storePath, delivered.digest);
  }

  private progress(): Response {
    const { task, handle } = this;
    return ev({
      case: "progress",
      value: {
        completedBytes: BigInt(task.finishedBytes),
        bytesFromPeers: BigInt(handle.run?.stats.bytesFromPeers ?? 0),
        bytesFromSource: BigInt(handle.run?.stats.bytesFromSource ?? 0),
        contentLength: BigInt(Math.max(0, task.meta.contentLength)),
      },
    });
  }

  // Progress events flow while the task completes; the client checks the
  // digest on the file it makes.
  private async *storePath(): AsyncGenerator<Response, { storePath: string; digest: string }> {
    const { task, expected } = this;
    const work = verifiedStorePath(task, this.signal, this.restart);
    let done = false;
    work.then(
      () => (done = true),
      () => (done = true),
    );
    while (!done) {
      await Promise.race([work.catch(() => undefined), sleep(PROGRESS_MS)]);
      if (!done) yield this.progress();
    }
    const storePath = await work;
    task.holdFor(STORE_PATH_GRACE_MS);
    // Hashed while it downloaded: tell the client, which then need not.
    const digest = expected && task.meta.contentDigest === formatDigest(expected) ? task.meta.contentDigest : "";
    return { storePath, digest };
  }

  // The bytes as chunk events; returns the digest they hashed to (when one
  // was asked for; a mismatch throws).
  private async *stream(): AsyncGenerator<Response, string> {
    const { expected } = this;
    // Made at the first bytes: the task's length is known by then (gitsha1 hashes it first).
    const newHasher = () => (expected ? new Digester(expected.algorithm, this.task.meta.contentLength) : undefined);
    let hasher: Digester | undefined;
    let offset = 0;
    let last = 0;
    // In chunks of at most 4 MiB however long the pieces (piece-chunks.ts):
    // whole 16-64 MiB pieces in flight took a daemon streaming a 4 GiB file
    // to 295 MiB RSS (bench/large-file-rss.ts, path stdout).
    for await (const buf of readTaskChunks(this.task, this.signal, this.restart, 0, Number.MAX_SAFE_INTEGER, reusedBuffers())) {
      hasher ??= newHasher();
      for (let i = 0; i < buf.length; i += CHUNK) {
        const data = buf.subarray(i, Math.min(buf.length, i + CHUNK));
        hasher?.update(data);
        yield ev({ case: "chunk", value: { offset: BigInt(offset), data } });
        offset += data.length;
      }
      if (Date.now() - last > PROGRESS_MS) {
        last = Date.now();
        yield this.progress();
      }
    }
    hasher ??= newHasher();
    if (!hasher || !expected) return "";
    const actual = hasher.digest();
    if (actual.hex !== expected.hex) throw digestMismatch(expected, actual);
    return formatDigest(actual);
  }

  private finished(storePath: string, digest: string): Response {
    const { task, span, bytesLocal } = this;
    const stats = this.handle.run?.stats;
    if (this.localHit) this.deps.metrics?.localBytes(task.meta.contentLength);
    if (span.recording) {
      span
        .setAttribute("damselfly.content_length", task.meta.contentLength)
        .setAttribute("damselfly.bytes_from_peers", stats?.bytesFromPeers ?? 0)
        .setAttribute("damselfly.bytes_from_origin", stats?.bytesFromSource ?? 0)
        .setAttribute("damselfly.bytes_local", bytesLocal)
        .setAttribute("damselfly.back_to_source", stats?.backToSource ?? false);
    }
    this.deps.logger.info(
      { taskId: task.id, ms: Date.now() - this.started, localHit: this.localHit, delivery: storePath ? "store-path" : "stream" },
      "download served",
    );
    return ev({
      case: "finished",
      value: {
        taskId: task.id,
        contentLength: BigInt(task.meta.contentLength),
        bytesFromPeers: BigInt(stats?.bytesFromPeers ?? 0),
        bytesFromSource: BigInt(stats?.bytesFromSource ?? 0),
        bytesLocal: BigInt(bytesLocal),
        digest,
        storePath,
        elapsedMs: BigInt(Date.now() - this.started),
        backToSource: stats?.backToSource ?? false,
        schedulerUnavailable: stats?.schedulerUnavailable ?? false,
      },
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
