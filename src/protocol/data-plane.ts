// The peer data plane's wire format, spoken by the upload server
// (peer/upload) and read by the downloader (peer/download): plain HTTP/1.1
// with keep-alive.
//   GET /v1/tasks/{taskId}/pieces/{n}   one verified piece; its CRC-32 in
//                                       PIECE_CRC32_HEADER, and with TLS its
//                                       fetcher-signed SHA-256 record in
//                                       PIECE_DIGEST_HEADER
//   GET /v1/tasks/{taskId}/sync         the piece-availability stream:
//                                       newline-delimited JSON, one
//                                       SyncMessage per line. Parents push;
//                                       children never poll per piece.
//   ?peer={peerId} on both: the child, for a seed's suggestions
// Errors are JSON {code, message} with our stable code in ERROR_HEADER; a
// parent whose upload slots are all taken answers 503 with
// DF_ERR_UPLOAD_BUSY.
// With TLS the data plane is mutual TLS between peer and seed-peer
// certificates, and a child trusts only signed records (protocol/trust.ts):
// the task's geometry from the "bundle" sync messages (sent once per stream
// and fetcher), each piece's SHA-256 from the record that comes with the
// piece's bytes. The record rides with the piece rather than on the sync
// stream: a child fetches each piece once but hears of it from every parent,
// so digests on the sync stream would cost every child a record per piece
// per parent, and the header binds the record to the very bytes it covers.

import { DamselflyError } from "../common/errors.js";
export { ERROR_HEADER } from "./headers.js";

export const SYNC_CONTENT_TYPE = "application/x-ndjson";
export const PIECE_CRC32_HEADER = "x-damselfly-piece-crc32";
// "SHA256HEX FETCHER-FINGERPRINT SIGNATURE" (see PieceRecord).
export const PIECE_DIGEST_HEADER = "x-damselfly-piece-digest";

// A piece's signed digest as it travels and is stored: the SHA-256 of its
// bytes, the fingerprint of the fetcher's certificate (whose bundle the
// child verified) and the fetcher's signature (trust.ts signPiece).
export interface PieceRecord {
  readonly sha256: string;
  readonly fetcher: string;
  readonly sig: string;
}

const RECORD = /^([0-9a-f]{64}) ([0-9A-F:]{95}) ([A-Za-z0-9+/=]{16,1024})$/;

export function formatPieceRecord(r: PieceRecord): string {
  return `${r.sha256} ${r.fetcher} ${r.sig}`;
}

// undefined when malformed.
export function parsePieceRecord(value: string | undefined): PieceRecord | undefined {
  const m = value === undefined ? null : RECORD.exec(value);
  return m ? { sha256: m[1]!, fetcher: m[2]!, sig: m[3]! } : undefined;
}

// A child's peer ID in the query: letters, digits, '.', '_' or '-'.
const PEER_ID = /^[A-Za-z0-9._-]{1,128}$/;
const PATH = /^\/v1\/tasks\/([^/]+)\/(sync|pieces\/(\d{1,9}))$/;

const query = (childId: string | undefined): string => (childId ? `?peer=${encodeURIComponent(childId)}` : "");

export function piecePath(taskId: string, n: number, childId?: string): string {
  return `/v1/tasks/${taskId}/pieces/${n}${query(childId)}`;
}

export function syncPath(taskId: string, childId?: string): string {
  return `/v1/tasks/${taskId}/sync${query(childId)}`;
}

// `query`: what follows "?", for childOf (checked only once the task is
// known, so an unknown task is reported as such first).
export type DataPlaneRequest = { taskId: string; query: string | undefined } & ({ kind: "sync" } | { kind: "piece"; number: number });

// A request target as the upload server reads it: undefined for a path that
// is not the data plane's.
export function parseDataPlaneUrl(url: string): DataPlaneRequest | undefined {
  const q = url.indexOf("?");
  const m = PATH.exec(q < 0 ? url : url.slice(0, q));
  if (!m) return undefined;
  const query = q < 0 ? undefined : url.slice(q + 1);
  return m[2] === "sync" ? { kind: "sync", taskId: m[1]!, query } : { kind: "piece", taskId: m[1]!, query, number: Number(m[3]) };
}

// The child's peer ID in a request's query (`peer=ID`), so a seed can match
// piece requests to what it suggested on that child's sync stream.
export function childOf(query: string | undefined): string | undefined {
  if (query === undefined) return undefined;
  const id = new URLSearchParams(query).get("peer");
  if (id === null) return undefined;
  if (!PEER_ID.test(id)) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "peer must be 1-128 letters, digits, '.', '_' or '-'");
  return id;
}

export type SyncMessage =
  | { type: "info"; contentLength: number; pieceLength: number }
  // [number, crc32, length] triples.
  | { type: "pieces"; pieces: Array<[number, number, number]> }
  | { type: "done" }
  // From a seed peer in initial seeding: ask me for these pieces (and, until
  // "suggest-end", for no others unless a local reader is blocked on one).
  | { type: "suggest"; pieces: number[] }
  | { type: "suggest-end" }
  | { type: "failed"; code: string; message: string; sourceStatus?: number }
  // With TLS: one trust bundle (trust.ts encodeRecord, as text) the parent
  // holds; each once per stream, before any piece it covers.
  | { type: "bundle"; record: string }
  | { type: "ping" };

export function encodeSyncLine(msg: SyncMessage): string {
  return JSON.stringify(msg) + "\n";
}

const MAX_LINE = 1024 * 1024;
const NL = 0x0a;

// Cuts bytes into lines and parses each as it completes. Lines are decoded
// only once whole, so a multi-byte character split between reads is safe;
// pushed buffers may be reused by the caller once push() returns (a partial
// line is copied). Throws on a malformed line or one over MAX_LINE bytes.
export class SyncLineSplitter {
  private partial: Buffer | undefined;

  constructor(private readonly onMessage: (msg: SyncMessage) => void) {}

  push(chunk: Uint8Array): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    if (this.partial) {
      const nl = buf.indexOf(NL);
      if (nl < 0) {
        this.keep(Buffer.concat([this.partial, buf]));
        return;
      }
      const line = Buffer.concat([this.partial, buf.subarray(0, nl)]);
      this.partial = undefined;
      if (line.length > 0) this.onMessage(parseSyncLine(line.toString("utf8")));
      at = nl + 1;
    }
    let nl: number;
    while ((nl = buf.indexOf(NL, at)) >= 0) {
      if (nl > at) this.onMessage(parseSyncLine(buf.toString("utf8", at, nl)));
      at = nl + 1;
    }
    if (at < buf.length) this.keep(Buffer.from(buf.subarray(at)));
  }

  private keep(rest: Buffer): void {
    if (rest.length > MAX_LINE) throw new Error("sync line too long");
    this.partial = rest;
  }
}

// Splits a byte stream into parsed messages; rejects malformed input rather
// than guessing (a parent that sends garbage is dropped by the caller).
export async function* decodeSyncStream(body: AsyncIterable<Uint8Array>): AsyncGenerator<SyncMessage> {
  const out: SyncMessage[] = [];
  const splitter = new SyncLineSplitter((m) => out.push(m));
  for await (const chunk of body) {
    splitter.push(chunk);
    while (out.length > 0) yield out.shift()!;
  }
}

function parseSyncLine(line: string): SyncMessage {
  const msg = JSON.parse(line) as SyncMessage;
  if (typeof msg !== "object" || msg === null || typeof msg.type !== "string") throw new Error("malformed sync message");
  if (msg.type === "pieces") {
    if (!Array.isArray(msg.pieces)) throw new Error("malformed pieces message");
    for (const p of msg.pieces) {
      if (!Array.isArray(p) || p.length !== 3 || !p.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new Error("malformed piece entry");
    }
  } else if (msg.type === "suggest") {
    if (!Array.isArray(msg.pieces) || !msg.pieces.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new Error("malformed suggest message");
  } else if (msg.type === "info") {
    if (!Number.isSafeInteger(msg.contentLength) || !Number.isSafeInteger(msg.pieceLength)) throw new Error("malformed info message");
  } else if (msg.type === "bundle") {
    if (typeof msg.record !== "string") throw new Error("malformed bundle message");
  }
  return msg;
}
