import { PIECE_DIGEST_HEADER } from "../../protocol/data-plane.js";

// The head of an HTTP/1.x response, as the daemon's raw-socket clients (piece
// fetches, sync streams) read it from a parent: just what they act on.
export interface ResponseHead {
  status: number;
  // -1: no length (chunked, or delimited by the connection closing).
  contentLength: number;
  chunked: boolean;
  keepAlive: boolean;
  // PIECE_DIGEST_HEADER's value (TLS: the piece's signed digest).
  digest?: string;
}

const HEAD_END = Buffer.from("\r\n\r\n");
const MAX_HEAD = 16 * 1024;

// Parses the text before the blank line; undefined if it is not a well-formed
// response head (the caller drops the parent: it is out of step or hostile).
export function parseResponseHead(text: string): ResponseHead | undefined {
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? "");
  if (!m) return undefined;
  let contentLength = -1;
  let keepAlive = m[1] === "1";
  let chunked = false;
  let digest: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (contentLength >= 0 && Number(value) !== contentLength)) return undefined;
      contentLength = Number(value);
    } else if (name === "connection") {
      const v = value.toLowerCase();
      if (v.includes("close")) keepAlive = false;
      else if (v.includes("keep-alive")) keepAlive = true;
    } else if (name === "transfer-encoding") {
      // Only chunked is ever sent to us; anything else we cannot frame.
      if (value.toLowerCase() !== "chunked") return undefined;
      chunked = true;
    } else if (name === PIECE_DIGEST_HEADER) {
      // Two records: no record.
      if (digest !== undefined) return undefined;
      digest = value;
    }
  }
  if (chunked) contentLength = -1;
  return { status: Number(m[2]), contentLength, chunked, keepAlive, ...(digest !== undefined ? { digest } : {}) };
}

export type HeadResult = { head: ResponseHead; rest: Buffer } | "partial" | "too-long" | "malformed";

// Gathers a response head across reads: the head and the body bytes that came
// with it once the blank line is in, "partial" until then.
export class HeadReader {
  private pending: Buffer | undefined;

  take(chunk: Buffer): HeadResult {
    const all = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    const end = all.indexOf(HEAD_END);
    if (end < 0) {
      if (all.length > MAX_HEAD) return "too-long";
      // Reads land in a buffer the next read reuses: keep a copy.
      this.pending = Buffer.from(all);
      return "partial";
    }
    this.pending = undefined;
    const head = parseResponseHead(all.toString("latin1", 0, end));
    return head ? { head, rest: all.subarray(end + HEAD_END.length) } : "malformed";
  }

  reset(): void {
    this.pending = undefined;
  }
}
