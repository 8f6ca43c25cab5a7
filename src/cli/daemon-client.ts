import { DamselflyError } from "../common/errors.js";
import { encodeEnvelope, EnvelopeReader, EnvelopeTooLargeError, FLAG_END_STREAM, type EnvelopeSink } from "../protocol/envelope.js";
import { endStreamError, JSON_CODEC, type DownloadEvent, type DownloadTaskJson, type EventCodec } from "./daemon-json.js";
import { asTarget, unreachableHint, type DaemonTarget } from "./daemon-target.js";

// `get`'s one client of DaemonService.DownloadTask: the Connect streaming
// protocol over HTTP/2 (on the daemon's Unix socket, cleartext on loopback,
// or mutual TLS: daemon-target.ts), on node:http2 alone. `get` is a
// short-lived process, often started on many nodes at once, and loading the
// Connect and protobuf runtimes would be a large part of its CPU
// (docs/decisions/get-client.md). Store-path delivery (a few small events)
// speaks JSON and loads no runtime; stream delivery carries the content, so
// it speaks binary protobuf, with the generated codec loaded only then.
// https://connectrpc.com/docs/protocol/#streaming-rpcs

export { type DownloadEvent, type DownloadTaskJson } from "./daemon-json.js";

export const DELIVERY_STREAM = 1;
export const DELIVERY_STORE_PATH = 2;

const PATH = "/damselfly.daemon.v1.DaemonService/DownloadTask";
// Content comes in 1 MiB chunks; anything near this is not our daemon.
const MAX_MESSAGE = 16 * 1024 * 1024;
// Messages read ahead of the consumer before the stream is paused (HTTP/2
// flow control then holds the daemon back).
const READ_AHEAD = 8;

async function binaryCodec(): Promise<EventCodec> {
  const [{ fromBinary, fromJson, toBinary }, d] = await Promise.all([import("@bufbuild/protobuf"), import("../protocol/gen/damselfly/daemon/v1/daemon_pb.js")]);
  return {
    contentType: "application/connect+proto",
    encode: (req) => toBinary(d.DownloadTaskRequestSchema, fromJson(d.DownloadTaskRequestSchema, req as never)),
    decode: (bytes) => fromBinary(d.DownloadTaskResponseSchema, bytes).event,
  };
}

type Item = { event: DownloadEvent } | Error | null;

// What the stream's listeners hand to the generator: events in order, an
// error, or null for the end of the stream.
class EventQueue implements EnvelopeSink {
  private readonly items: Item[] = [];
  private wake: (() => void) | undefined;
  private readonly reader = new EnvelopeReader(MAX_MESSAGE);
  ended = false;

  constructor(
    private readonly codec: EventCodec,
    private readonly daemonUrl: string,
  ) {}

  get length(): number {
    return this.items.length;
  }

  push(x: Item): void {
    this.items.push(x);
    this.wake?.();
  }

  data(chunk: Buffer): void {
    try {
      this.reader.push(chunk, this);
    } catch (e) {
      this.push(e instanceof EnvelopeTooLargeError ? new DamselflyError("DF_ERR_INTERNAL", `daemon sent a ${e.bytes}-byte message`) : (e as Error));
    }
  }

  envelope(flags: number, message: Buffer): boolean {
    if (flags & FLAG_END_STREAM) {
      const err = endStreamError(message, this.daemonUrl);
      if (err) this.push(err);
      else this.ended = true;
      return true;
    }
    try {
      this.push({ event: this.codec.decode(message) });
    } catch (e) {
      this.push(e instanceof DamselflyError ? e : new DamselflyError("DF_ERR_INTERNAL", "daemon sent a malformed message", { cause: e }));
      return false;
    }
    return true;
  }

  async next(): Promise<Item> {
    while (this.items.length === 0) await new Promise<void>((r) => (this.wake = r));
    this.wake = undefined;
    return this.items.shift()!;
  }
}

// Yields the daemon's events in order; throws a DamselflyError for a failed
// download, an unreachable daemon or a broken answer.
// `headers` carries the W3C trace context (traceparent) when tracing is on.
export async function* downloadTask(
  daemon: DaemonTarget | string,
  request: DownloadTaskJson,
  signal: AbortSignal,
  headers: Record<string, string> = {},
): AsyncGenerator<DownloadEvent> {
  // A refused connection fails the pending stream too, with the socket's
  // error as its cause: report the cause.
  const target = asTarget(daemon);
  const daemonUrl = target.label;
  // Whatever breaks the connection (refused, reset, EOF, the socket or the
  // stream closed without Connect's end-of-stream message) means the daemon
  // is unavailable: before its answer it was unreachable, after it went away
  // mid-download (killed, crashed, restarted).
  let answered = false;
  const unavailable = (e?: Error) => {
    const root = e?.cause instanceof Error ? e.cause : e;
    if (answered) {
      const why = root ? `: ${root.message}` : "";
      return new DamselflyError("DF_ERR_DAEMON_UNAVAILABLE", `lost the connection to the daemon at ${daemonUrl} mid-download${why}`, { cause: e });
    }
    const hint = root ? unreachableHint(target.target, root as NodeJS.ErrnoException) : "";
    return new DamselflyError("DF_ERR_DAEMON_UNAVAILABLE", `daemon unreachable at ${daemonUrl}: ${root?.message ?? "connection closed"}${hint}`, { cause: e });
  };
  if (signal.aborted) throw signal.reason;
  const codec = request.delivery === DELIVERY_STORE_PATH ? JSON_CODEC : await binaryCodec();
  const session = target.connect();
  const queue = new EventQueue(codec, daemonUrl);
  session.on("error", (e) => queue.push(unavailable(e)));
  const onAbort = () => queue.push(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const stream = session.request({ ...headers, ":method": "POST", ":path": PATH, "content-type": codec.contentType, "connect-protocol-version": "1" });
    stream.on("response", (h) => {
      answered = true;
      const status = Number(h[":status"]);
      if (status !== 200) queue.push(new DamselflyError("DF_ERR_INTERNAL", `daemon answered DownloadTask with HTTP ${status}`));
    });
    stream.on("data", (d: Buffer) => {
      queue.data(d);
      if (queue.length >= READ_AHEAD) stream.pause();
    });
    // The stream also ends when the connection does: only an end with the
    // session up and no reset is the daemon's own.
    const lost = () => session.destroyed || session.closed || (stream.rstCode ?? 0) !== 0;
    stream.on("end", () => queue.push(lost() ? unavailable() : null));
    stream.on("error", (e) => queue.push(unavailable(e)));
    // Closed without "end" or "error" (the session went down under it).
    stream.on("close", () => queue.push(unavailable()));
    stream.end(encodeEnvelope(codec.encode(request)));
    for (;;) {
      const next = await queue.next();
      if (queue.length < READ_AHEAD / 2 && stream.isPaused()) stream.resume();
      if (next instanceof Error) throw next;
      if (next === null) break;
      yield next.event;
    }
    if (!queue.ended) throw new DamselflyError("DF_ERR_INTERNAL", "daemon closed the download stream early");
  } finally {
    signal.removeEventListener("abort", onAbort);
    session.destroy();
  }
}
