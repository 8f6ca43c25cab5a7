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

// Splits a byte stream into parsed messages; rejects malformed input rather
// than guessing (a parent that sends garbage is dropped by the caller).
export async function* decodeSyncStream(body: AsyncIterable<Uint8Array>): AsyncGenerator<SyncMessage> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.length > 0) yield parseSyncLine(line);
    }
    if (buf.length > MAX_LINE) throw new Error("sync line too long");
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
