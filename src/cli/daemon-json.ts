import { DamselflyError } from "../common/errors.js";
import type { daemonv1 } from "../protocol/index.js";
import { ERROR_HEADER, SOURCE_STATUS_HEADER } from "../protocol/headers.js";

// DownloadTask's messages in proto3 JSON for `get`'s store-path delivery,
// without the protobuf runtime (src/cli/daemon-client.ts says why). The
// event shapes below mirror daemon.proto; test/unit/daemon-client.test.ts
// checks them against the generated descriptors (every field, its type and
// the message's type name) and round-trips generated messages through them.

export type DownloadEvent = daemonv1.DownloadTaskResponse["event"];

// How one delivery mode's messages are written and read.
export interface EventCodec {
  contentType: string;
  encode(request: DownloadTaskJson): Uint8Array;
  decode(message: Buffer): DownloadEvent;
}

// DownloadTaskRequest as proto3 JSON.
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
    // The task is keyed by `digest` (an LFS file of the Hugging Face Hub).
    digestTaskId?: boolean;
  };
  // daemonv1.Delivery: proto3 JSON takes the enum's number.
  delivery: number;
  // Bytes per second for this task (absent: the daemon's default).
  rateLimit?: number;
}

// The fields of one event message, by proto3 type.
export interface EventShape {
  typeName: string;
  string: readonly string[];
  uint64: readonly string[];
  bool: readonly string[];
}

// The events store-path delivery gets (never a chunk), by oneof case.
export const EVENT_SHAPES: Record<"started" | "progress" | "finished", EventShape> = {
  started: {
    typeName: "damselfly.daemon.v1.DownloadStarted",
    string: ["taskId", "peerId"],
    uint64: ["contentLength", "pieceLength"],
    bool: ["contentLengthKnown", "localHit"],
  },
  progress: {
    typeName: "damselfly.daemon.v1.DownloadProgress",
    string: [],
    uint64: ["completedBytes", "bytesFromPeers", "bytesFromSource", "contentLength"],
    bool: [],
  },
  finished: {
    typeName: "damselfly.daemon.v1.DownloadFinished",
    string: ["taskId", "digest", "storePath"],
    uint64: ["contentLength", "bytesFromPeers", "bytesFromSource", "bytesLocal", "elapsedMs"],
    bool: ["backToSource", "schedulerUnavailable"],
  },
};

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null;

// proto3 JSON writes 64-bit integers as strings and leaves out zeros.
function u64(o: Json, k: string): bigint {
  const v = o[k];
  if (v === undefined) return 0n;
  if ((typeof v === "string" && /^\d{1,20}$/.test(v)) || (typeof v === "number" && Number.isSafeInteger(v) && v >= 0)) return BigInt(v);
  throw new DamselflyError("DF_ERR_INTERNAL", `daemon sent a malformed ${k}: ${JSON.stringify(v)}`);
}

function toValue(v: Json, shape: EventShape): Json {
  const out: Json = { $typeName: shape.typeName };
  for (const k of shape.string) out[k] = typeof v[k] === "string" ? v[k] : "";
  for (const k of shape.uint64) out[k] = u64(v, k);
  for (const k of shape.bool) out[k] = v[k] === true;
  return out;
}

function toEvent(msg: Json): DownloadEvent {
  for (const c of ["started", "progress", "finished"] as const) {
    const v = msg[c];
    if (isObject(v)) return { case: c, value: toValue(v, EVENT_SHAPES[c]) } as DownloadEvent;
  }
  // Unknown events are skipped like protobuf skips unknown fields.
  return { case: undefined, value: undefined };
}

function parse(message: Buffer): Json {
  try {
    const v: unknown = JSON.parse(message.toString("utf8"));
    if (isObject(v)) return v;
  } catch {
    // Reported below.
  }
  throw new DamselflyError("DF_ERR_INTERNAL", "daemon sent a malformed message");
}

export const JSON_CODEC: EventCodec = {
  contentType: "application/connect+json",
  encode: (request) => Buffer.from(JSON.stringify(request)),
  decode: (message) => toEvent(parse(message)),
};

// The Connect end-of-stream message (JSON in either codec): undefined for a
// clean end, else the error, with our stable code from its metadata.
export function endStreamError(message: Buffer, daemonUrl: string): DamselflyError | undefined {
  const msg = parse(message);
  const e = msg["error"];
  if (!isObject(e)) return undefined;
  const meta = isObject(msg["metadata"]) ? msg["metadata"] : {};
  const first = (k: string): string | undefined => (Array.isArray(meta[k]) && typeof meta[k][0] === "string" ? (meta[k][0] as string) : undefined);
  const text = typeof e["message"] === "string" ? e["message"] : "";
  const code = first(ERROR_HEADER);
  if (code && DamselflyError.isCode(code)) {
    const status = first(SOURCE_STATUS_HEADER);
    return new DamselflyError(code, text || undefined, status ? { sourceStatus: Number(status) } : {});
  }
  const rpcCode = typeof e["code"] === "string" ? e["code"] : "";
  switch (rpcCode) {
    case "unavailable":
      return new DamselflyError("DF_ERR_DAEMON_UNAVAILABLE", `daemon unreachable at ${daemonUrl}: ${text}`);
    case "deadline_exceeded":
      return new DamselflyError("DF_ERR_TIMEOUT", text || undefined);
    case "canceled":
      return new DamselflyError("DF_ERR_CANCELLED", text || undefined);
    default:
      return new DamselflyError("DF_ERR_INTERNAL", text || `daemon failed the download (${rpcCode || "unknown"})`);
  }
}
