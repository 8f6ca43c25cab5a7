import http2 from "node:http2";
import { DamselflyError } from "../common/errors.js";
import type { daemonv1 } from "../protocol/index.js";

// DaemonService.DownloadTask for `get`, spoken as the Connect protocol with
// JSON messages over HTTP/2 cleartext, on node:http2 alone. `get` is a
// short-lived process, often started on many nodes at once, and loading the
// Connect and protobuf runtimes cost it about half of its CPU (~125 of ~270
// ms per start). Only the store-path delivery comes this way (its messages
// are a few small events); streamed content stays on the binary Connect
// client, where bytes are not base64.

export type DownloadEvent = daemonv1.DownloadTaskResponse["event"];

export interface DownloadTaskJson {
  download: {
    url: string;
    headers: Record<string, string>;
    tag: string;
    application: string;
    filteredQueryParams: string[];
    priority: number;
    pieceLength: number;
    disableBackToSource: boolean;
    digest: string;
  };
  // daemonv1.Delivery: proto3 JSON takes the enum's number.
  delivery: number;
  timeoutMs: number;
  // Bytes per second for this task (absent: the daemon's default).
  rateLimit?: number;
}

const PATH = "/damselfly.daemon.v1.DaemonService/DownloadTask";
const END_STREAM = 0x02;
// Events are a few hundred bytes; anything near this is not our daemon.
const MAX_MESSAGE = 1024 * 1024;

type Json = Record<string, unknown>;

const str = (o: Json, k: string): string => (typeof o[k] === "string" ? (o[k] as string) : "");
const bool = (o: Json, k: string): boolean => o[k] === true;
// proto3 JSON writes 64-bit integers as strings and leaves out zeros.
function u64(o: Json, k: string): bigint {
  const v = o[k];
  if (v === undefined) return 0n;
  if ((typeof v === "string" && /^\d{1,20}$/.test(v)) || (typeof v === "number" && Number.isSafeInteger(v) && v >= 0)) return BigInt(v);
  throw new DamselflyError("DF_ERR_INTERNAL", `daemon sent a malformed ${k}: ${JSON.stringify(v)}`);
}

function toEvent(msg: Json): DownloadEvent {
  const obj = (k: string): Json | undefined => (typeof msg[k] === "object" && msg[k] !== null ? (msg[k] as Json) : undefined);
  let v: Json | undefined;
  if ((v = obj("started"))) {
    return {
      case: "started",
      value: {
        $typeName: "damselfly.daemon.v1.DownloadStarted",
        taskId: str(v, "taskId"),
        peerId: str(v, "peerId"),
        contentLength: u64(v, "contentLength"),
        pieceLength: u64(v, "pieceLength"),
        contentLengthKnown: bool(v, "contentLengthKnown"),
        localHit: bool(v, "localHit"),
      },
    };
  }
  if ((v = obj("progress"))) {
    return {
      case: "progress",
      value: {
        $typeName: "damselfly.daemon.v1.DownloadProgress",
        completedBytes: u64(v, "completedBytes"),
        bytesFromPeers: u64(v, "bytesFromPeers"),
        bytesFromSource: u64(v, "bytesFromSource"),
        contentLength: u64(v, "contentLength"),
      },
    };
  }
  if ((v = obj("finished"))) {
    return {
      case: "finished",
      value: {
        $typeName: "damselfly.daemon.v1.DownloadFinished",
        taskId: str(v, "taskId"),
        contentLength: u64(v, "contentLength"),
        bytesFromPeers: u64(v, "bytesFromPeers"),
        bytesFromSource: u64(v, "bytesFromSource"),
        bytesLocal: u64(v, "bytesLocal"),
        digest: str(v, "digest"),
        storePath: str(v, "storePath"),
        elapsedMs: u64(v, "elapsedMs"),
        backToSource: bool(v, "backToSource"),
        schedulerUnavailable: bool(v, "schedulerUnavailable"),
      },
    };
  }
  // Chunks never come with store-path delivery; unknown events are skipped
  // like protobuf skips unknown fields.
  return { case: undefined, value: undefined };
}

// The Connect end-of-stream error, with our stable code from its metadata.
function endStreamError(msg: Json, daemonUrl: string): DamselflyError | undefined {
  const err = msg["error"];
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as Json;
  const meta = (typeof msg["metadata"] === "object" && msg["metadata"] !== null ? msg["metadata"] : {}) as Record<string, unknown>;
  const first = (k: string): string | undefined => (Array.isArray(meta[k]) && typeof (meta[k] as unknown[])[0] === "string" ? ((meta[k] as string[])[0] as string) : undefined);
  const message = str(e, "message");
  const code = first("x-damselfly-error");
  if (code && DamselflyError.isCode(code)) {
    const status = first("x-damselfly-source-status");
    return new DamselflyError(code, message || undefined, status ? { sourceStatus: Number(status) } : {});
  }
  switch (str(e, "code")) {
    case "unavailable":
      return new DamselflyError("DF_ERR_DAEMON_UNAVAILABLE", `daemon unreachable at ${daemonUrl}: ${message}`);
    case "deadline_exceeded":
      return new DamselflyError("DF_ERR_TIMEOUT", message || undefined);
    case "canceled":
      return new DamselflyError("DF_ERR_CANCELLED", message || undefined);
    default:
      return new DamselflyError("DF_ERR_INTERNAL", message || `daemon failed the download (${str(e, "code") || "unknown"})`);
  }
}

// Yields the daemon's events in order; throws a DamselflyError for a failed
// download, an unreachable daemon or a broken answer.
// `headers` carries the W3C trace context (traceparent) when tracing is on.
export async function* downloadTaskLean(daemonUrl: string, request: DownloadTaskJson, signal: AbortSignal, headers: Record<string, string> = {}): AsyncGenerator<DownloadEvent> {
  // A refused connection fails the pending stream too, with the socket's
  // error as its cause: report the cause.
  const unreachable = (e: Error) => {
    const root = e.cause instanceof Error ? e.cause : e;
    return new DamselflyError("DF_ERR_DAEMON_UNAVAILABLE", `daemon unreachable at ${daemonUrl}: ${root.message}`, { cause: e });
  };
  if (signal.aborted) throw signal.reason;
  const session = http2.connect(daemonUrl);
  const queue: Array<Buffer | Error | null> = [];
  let wake: (() => void) | undefined;
  const push = (x: Buffer | Error | null) => {
    queue.push(x);
    wake?.();
  };
  session.on("error", (e) => push(unreachable(e)));
  const onAbort = () => push(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const body = Buffer.from(JSON.stringify(request));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length, 1);
    const stream = session.request({ ...headers, ":method": "POST", ":path": PATH, "content-type": "application/connect+json", "connect-protocol-version": "1" });
    stream.on("response", (h) => {
      const status = Number(h[":status"]);
      if (status !== 200) push(new DamselflyError("DF_ERR_INTERNAL", `daemon answered DownloadTask with HTTP ${status}`));
    });
    stream.on("data", (d: Buffer) => push(d));
    stream.on("end", () => push(null));
    stream.on("error", (e) => push(unreachable(e)));
    stream.end(Buffer.concat([head, body]));

    let buf: Buffer = Buffer.alloc(0);
    let ended = false;
    for (;;) {
      const next = queue.shift();
      if (next === undefined) {
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      if (next instanceof Error) throw next;
      if (next === null) break;
      buf = buf.length === 0 ? next : Buffer.concat([buf, next]);
      while (buf.length >= 5) {
        const flags = buf[0]!;
        const len = buf.readUInt32BE(1);
        if (len > MAX_MESSAGE) throw new DamselflyError("DF_ERR_INTERNAL", `daemon sent a ${len}-byte message`);
        if (buf.length < 5 + len) break;
        let msg: Json;
        try {
          msg = JSON.parse(buf.toString("utf8", 5, 5 + len)) as Json;
        } catch {
          throw new DamselflyError("DF_ERR_INTERNAL", "daemon sent a malformed message");
        }
        buf = buf.subarray(5 + len);
        if (flags & END_STREAM) {
          const err = endStreamError(msg, daemonUrl);
          if (err) throw err;
          ended = true;
          continue;
        }
        yield toEvent(msg);
      }
    }
    if (!ended) throw new DamselflyError("DF_ERR_INTERNAL", "daemon closed the download stream early");
  } finally {
    signal.removeEventListener("abort", onAbort);
    session.destroy();
  }
}
