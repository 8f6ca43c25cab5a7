// `damselfly get` (dfget): asks the local daemon to download a URL through the
// swarm, shows progress, and reports the outcome with a stable error code.
import { once } from "node:events";
import { open, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { createRequire } from "node:module";
import type { SingleBar } from "cli-progress";
import { DamselflyError } from "../common/errors.js";
import { formatDigest, parseDigest } from "../common/digest.js";
import type { GetConfig } from "../common/schemas.js";
import { parseSourceUrl } from "../common/task-id.js";
import { parseHeaders } from "../common/http-headers.js";
import { findCredentials, isS3Url, parseS3Url } from "../common/s3/s3-config.js";
import { resolveS3, s3TaskTag } from "../common/s3/s3-resolve.js";
import { hfEndpoint, hfTaskTag, hfToken, isHfUrl, parseHfUrl, resolveHf } from "../common/hf/hf-resolve.js";
import { SpanKind, spanUrl, startSpan, traceHeaders, type Span } from "../common/trace.js";
import type { daemonv1 } from "../protocol/index.js";
import { DELIVERY_STORE_PATH, DELIVERY_STREAM, downloadTask, type DownloadEvent, type DownloadTaskJson } from "./daemon-client.js";
import { formatBytes, formatDuration, formatElapsed, formatEta, formatRate } from "./format.js";
import { copyStoreFile, outputTarget, placeOutput, readStoreFile, writeInto } from "./output-file.js";
import { daemonTarget, type DaemonTarget } from "./daemon-target.js";

export interface GetIo {
  stdout: NodeJS.WritableStream & { writableNeedDrain?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  // Prefix of the summary line, e.g. "damselfly get".
  prefix: string;
  // The --timeout value as the user wrote it, for the error message.
  timeoutText?: string;
  // Aborted when the user interrupts (SIGINT/SIGTERM).
  signal?: AbortSignal;
  // Told each progress report (get -r draws one display for the whole set).
  onProgress?: (done: number, total: number) => void;
}

export interface GetRequest {
  url: string;
  outputPath: string; // absolute, or "" for stdout
  headers: Record<string, string>;
  digest: string;
  daemon: DaemonTarget;
  // The task tag (an s3:// object's adds its ETag or version to the user's).
  tag: string;
  // The task is keyed by `digest` (an hf:// LFS file's sha256), not the URL.
  digestTaskId?: boolean;
}

export { parseHeaders } from "../common/http-headers.js";

// Everything checked before the daemon is contacted.
export async function validateGet(rawUrl: string, config: GetConfig): Promise<GetRequest> {
  if (isS3Url(rawUrl)) parseS3Url(rawUrl);
  else if (isHfUrl(rawUrl)) parseHfUrl(rawUrl);
  else parseSourceUrl(rawUrl);
  const digest = config.digest === "" ? "" : formatDigest(parseDigest(config.digest));
  const headers = parseHeaders(config.header);
  if (config.output === "") throw new DamselflyError("DF_ERR_USAGE", "missing -O/--output (a file path, or - for stdout)");
  const daemon = await daemonTarget(config.daemon, config);
  let outputPath = "";
  if (config.output !== "-") {
    outputPath = resolve(config.output);
    const dir = dirname(outputPath);
    const dirStat = await stat(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") throw new DamselflyError("DF_ERR_OUTPUT", `output directory ${dir} does not exist`);
      throw new DamselflyError("DF_ERR_OUTPUT", `output directory ${dir}: ${e.message}`, { cause: e });
    });
    if (!dirStat.isDirectory()) throw new DamselflyError("DF_ERR_OUTPUT", `output directory ${dir} is not a directory`);
    const outStat = await stat(outputPath).catch(() => undefined);
    if (outStat?.isDirectory()) throw new DamselflyError("DF_ERR_OUTPUT", `output ${outputPath} is a directory`);
  }
  // Signed here with the caller's credentials: only the presigned URL leaves.
  // A caller with none (and no --s3-* flag to honour) hands the s3:// URL to
  // the daemon, which signs it with its own credentials and s3 defaults.
  const s3Named = config.s3Endpoint !== "" || config.s3Region !== "" || config.s3PathStyle;
  if (isS3Url(rawUrl) && (s3Named || findCredentials())) {
    const s3 = await resolveS3(rawUrl, { endpoint: config.s3Endpoint, region: config.s3Region, pathStyle: config.s3PathStyle });
    return { url: s3.url, outputPath, headers, digest, daemon, tag: s3TaskTag(config.tag, s3.identity) };
  }
  if (isHfUrl(rawUrl)) return resolveHfGet(rawUrl, config, { url: rawUrl, outputPath, headers, digest, daemon, tag: config.tag });
  return { url: rawUrl, outputPath, headers, digest, daemon, tag: config.tag };
}

// Resolved here with the caller's HF_TOKEN (hf/hf-resolve.ts): an LFS file
// reaches the daemon as its CDN URL, keyed and checked by its sha256; a
// plain file as its resolve URL pinned to the commit, keyed and checked by
// its git blob id (so an unchanged file at a new commit is the same task).
async function resolveHfGet(rawUrl: string, config: GetConfig, req: GetRequest): Promise<GetRequest> {
  const hf = await resolveHf(rawUrl, { endpoint: hfEndpoint(config.hfEndpoint), revision: config.hfRevision || "main", token: hfToken() });
  const headers = { ...hf.headers, ...req.headers };
  // A plain file with the caller's own --digest: keyed by its commit-pinned URL and blob id, checked against that digest.
  if (hf.blob !== "" && req.digest !== "") return { ...req, url: hf.url, headers, tag: hfTaskTag(config.tag, hf.blob) };
  if (req.digest !== "" && req.digest !== hf.digest) {
    throw new DamselflyError("DF_ERR_USAGE", `--digest ${req.digest} differs from the hub's sha256 for ${rawUrl} (${hf.digest})`);
  }
  return { ...req, url: hf.url, headers, digest: hf.digest, digestTaskId: true };
}

class Progress {
  private bar: SingleBar | undefined;
  private readonly started = Date.now();

  constructor(
    stream: GetIo["stderr"],
    enabled: boolean,
    private readonly listener?: (done: number, total: number) => void,
  ) {
    if (!enabled || !stream.isTTY) return;
    // Loaded only for a bar on a terminal (scripts and rollouts run without one).
    const { SingleBar: Bar } = createRequire(import.meta.url)("cli-progress") as typeof import("cli-progress");
    this.bar = new Bar({
      stream: stream as NodeJS.WritableStream,
      format: (_options, params, payload: { done?: string; total?: string; speed?: string }) => {
        const pct = params.total > 0 ? `${Math.floor(params.progress * 100)}%`.padStart(4) : "";
        const width = 30;
        const filled = params.total > 0 ? Math.round(Math.min(1, params.progress) * width) : 0;
        const bar = params.total > 0 ? `[${"=".repeat(filled)}${" ".repeat(width - filled)}] ` : "";
        const eta = params.total > 0 && params.value > 0 && params.value < params.total && Number.isFinite(params.eta) ? ` | ETA ${formatEta(params.eta)}` : "";
        const total = params.total > 0 ? ` / ${payload.total ?? ""}` : "";
        return `${bar}${pct} ${payload.done ?? "0 B"}${total} | ${payload.speed ?? ""}${eta}`;
      },
      hideCursor: true,
      clearOnComplete: true,
      stopOnComplete: false,
      fps: 8,
      etaBuffer: 50,
      etaAsynchronousUpdate: true,
    });
    this.bar.start(0, 0, this.payload(0, 0));
  }

  private payload(done: number, total: number) {
    return { done: formatBytes(done), total: formatBytes(total), speed: formatRate(done, Date.now() - this.started) };
  }

  update(done: number, total: number): void {
    this.listener?.(done, total);
    if (!this.bar) return;
    if (total > 0 && this.bar.getTotal() !== total) this.bar.setTotal(total);
    this.bar.update(done, this.payload(done, total));
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

export function summaryLine(prefix: string, f: daemonv1.DownloadFinished, clientElapsedMs: number, dest: string): string {
  const elapsed = Math.max(clientElapsedMs, Number(f.elapsedMs));
  const sched = f.schedulerUnavailable ? " (scheduler unreachable: downloaded from origin)" : "";
  return (
    `${prefix}: ${formatBytes(f.contentLength)} in ${formatElapsed(elapsed)} (${formatRate(f.contentLength, elapsed)}) -> ${dest}; ` +
    `from peers ${formatBytes(f.bytesFromPeers)}, from origin ${formatBytes(f.bytesFromSource)}, local ${formatBytes(f.bytesLocal)}; ` +
    `task ${f.taskId.slice(0, 12)}${sched}`
  );
}

async function writeOut(out: NodeJS.WritableStream, data: Uint8Array, signal: AbortSignal): Promise<void> {
  if (out.write(data)) return;
  await once(out, "drain", { signal });
}

// One DownloadTask call: progress to the bar, chunks (stream delivery) to
// `sink` in order; resolves with the daemon's final report.
async function download(
  events: AsyncIterable<DownloadEvent>,
  progress: Progress,
  sink: ((data: Uint8Array) => Promise<void>) | undefined,
): Promise<daemonv1.DownloadFinished> {
  let finished: daemonv1.DownloadFinished | undefined;
  let written = 0n;
  for await (const ev of events) {
    switch (ev.case) {
      case "started":
        progress.update(0, Number(ev.value.contentLength));
        break;
      case "progress":
        progress.update(Number(ev.value.completedBytes), Number(ev.value.contentLength));
        break;
      case "chunk":
        if (!sink) throw new DamselflyError("DF_ERR_INTERNAL", "daemon streamed content although it was asked for the store path");
        if (ev.value.offset !== written) {
          throw new DamselflyError("DF_ERR_INTERNAL", `daemon streamed content out of order: expected offset ${written}, got ${ev.value.offset}`);
        }
        await sink(ev.value.data);
        written += BigInt(ev.value.data.length);
        break;
      case "finished":
        finished = ev.value;
        break;
      default:
        break;
    }
  }
  if (!finished) throw new DamselflyError("DF_ERR_INTERNAL", "daemon ended the download without reporting its outcome");
  if (sink && finished.contentLength !== written) {
    throw new DamselflyError("DF_ERR_INTERNAL", `daemon streamed ${written} bytes but reported ${finished.contentLength}`);
  }
  return finished;
}

function taskRequest(req: GetRequest, config: GetConfig, delivery: number): DownloadTaskJson {
  return {
    download: {
      url: req.url,
      headers: req.headers,
      tag: req.tag,
      application: config.application,
      filteredQueryParams: [...config.filter],
      priority: config.priority,
      pieceLength: config.pieceLength,
      disableBackToSource: config.disableBackToSource,
      digest: req.digest,
      ...(req.digestTaskId ? { digestTaskId: true } : {}),
    },
    delivery,
    ...(config.rateLimit > 0 ? { rateLimit: config.rateLimit } : {}),
  };
}

// Runs one download; throws a DamselflyError on failure.
export async function runGet(rawUrl: string, config: GetConfig, io: GetIo): Promise<daemonv1.DownloadFinished> {
  const req = await validateGet(rawUrl, config);
  const started = Date.now();
  const ac = new AbortController();
  let timedOut = false;
  let interrupted = false;
  const timeoutText = io.timeoutText ?? formatDuration(config.timeout);
  // The one timer for --timeout: the daemon is not given the limit, its side
  // of the call ends when this one is aborted.
  const timer =
    config.timeout > 0
      ? setTimeout(() => {
          timedOut = true;
          ac.abort(new DamselflyError("DF_ERR_TIMEOUT", `download timed out after ${timeoutText}`));
        }, config.timeout)
      : undefined;
  const onInterrupt = () => {
    interrupted = true;
    ac.abort(new DamselflyError("DF_ERR_CANCELLED", "interrupted"));
  };
  if (io.signal?.aborted) onInterrupt();
  io.signal?.addEventListener("abort", onInterrupt, { once: true });
  // A closed stdout (e.g. `| head`) ends the download instead of crashing.
  let outputError: DamselflyError | undefined;
  const onStdoutError = (e: Error) => {
    outputError = new DamselflyError("DF_ERR_OUTPUT", `cannot write to stdout: ${e.message}`, { cause: e });
    ac.abort(outputError);
  };
  const toStdout = req.outputPath === "";
  if (toStdout) io.stdout.on("error", onStdoutError);

  const progress = new Progress(io.stderr, config.progress, io.onProgress);
  // The root of the download's trace: the daemon's spans hang below it.
  const span: Span = startSpan("get", {
    kind: SpanKind.CLIENT,
    attributes: { "url.full": spanUrl(req.url), "damselfly.output": toStdout ? "stdout" : "file" },
  });
  const trace = traceHeaders(span);
  const streamed = () => downloadTask(req.daemon, taskRequest(req, config, DELIVERY_STREAM), ac.signal, trace);

  let finished: daemonv1.DownloadFinished;
  try {
    if (toStdout) {
      finished = await download(streamed(), progress, (data) => writeOut(io.stdout, data, ac.signal));
    } else {
      const stored = () => downloadTask(req.daemon, taskRequest(req, config, DELIVERY_STORE_PATH), ac.signal, trace);
      finished = await downloadToFile(req, progress, stored, streamed);
    }
  } catch (err) {
    const e = classify(err, { timedOut, interrupted, outputError, timeoutText });
    span.setError(e).end();
    throw e;
  } finally {
    if (timer) clearTimeout(timer);
    io.signal?.removeEventListener("abort", onInterrupt);
    progress.stop();
  }
  if (toStdout) io.stdout.off("error", onStdoutError);
  endSpan(span, finished);
  io.stderr.write(summaryLine(io.prefix, finished, Date.now() - started, toStdout ? "stdout" : req.outputPath) + "\n");
  return finished;
}

type Events = ReturnType<typeof downloadTask>;

// -O FILE: the daemon keeps the task in its store and the output is a copy
// of the store file (output-file.ts says how each kind of path is put), or,
// when that file is out of reach, the task streamed again.
async function downloadToFile(req: GetRequest, progress: Progress, stored: () => Events, streamed: () => Events): Promise<daemonv1.DownloadFinished> {
  const expected = req.digest ? parseDigest(req.digest) : undefined;
  // Before the download: a directory or a socket fails at once.
  const target = await outputTarget(req.outputPath);
  const report = await download(stored(), progress, undefined);
  let finished = report;
  // The daemon vouches that its store file hashes to the digest (it hashed
  // the task while it downloaded and the file is unchanged since): the
  // output, a copy of that file, is not hashed again.
  const check = expected !== undefined && report.digest === formatDigest(expected) ? undefined : expected;
  if (target.kind === "into") {
    await writeInto(
      target.path,
      check,
      async (write) => {
        if (await readStoreFile(report.storePath, write)) return;
        finished = await download(streamed(), progress, write);
      },
      Number(report.contentLength),
    );
    return finished;
  }
  await placeOutput(target.path, check, async (tmp) => {
    if (await copyStoreFile(report.storePath, tmp)) return;
    // The daemon's store is out of reach (another host, another user's
    // files): have the finished task streamed instead.
    const fh = await open(tmp, "wx", 0o644);
    try {
      finished = await download(streamed(), progress, (data) => fh.write(data).then(() => undefined));
    } finally {
      await fh.close();
    }
  });
  return finished;
}

function endSpan(span: Span, finished: daemonv1.DownloadFinished): void {
  if (span.recording) {
    span
      .setAttribute("damselfly.task_id", finished.taskId)
      .setAttribute("damselfly.content_length", Number(finished.contentLength))
      .setAttribute("damselfly.bytes_from_peers", Number(finished.bytesFromPeers))
      .setAttribute("damselfly.bytes_from_origin", Number(finished.bytesFromSource))
      .setAttribute("damselfly.bytes_local", Number(finished.bytesLocal));
  }
  span.end();
}

interface FailureContext {
  timedOut: boolean;
  interrupted: boolean;
  outputError: DamselflyError | undefined;
  timeoutText: string;
}

function classify(err: unknown, c: FailureContext): DamselflyError {
  if (c.timedOut) return new DamselflyError("DF_ERR_TIMEOUT", `download timed out after ${c.timeoutText}`, { cause: err });
  if (c.interrupted) return new DamselflyError("DF_ERR_CANCELLED", "interrupted", { cause: err });
  if (c.outputError) return c.outputError;
  return DamselflyError.from(err);
}
