// The piece-availability stream between peers: newline-delimited JSON, one
// message per line. Parents push; children never poll per piece.

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
  }
  return msg;
}
