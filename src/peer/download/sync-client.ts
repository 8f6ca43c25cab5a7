import net from "node:net";
import { DamselflyError } from "../../common/errors.js";
import { SYNC_CONTENT_TYPE, SyncLineSplitter, type SyncMessage } from "../../protocol/index.js";
import { HeadReader } from "./http1-head.js";

// A child's side of a parent's sync stream (piece availability, as
// newline-delimited JSON): one GET on its own socket, read for as long as the
// parent has news. Every child holds one per parent for the whole download,
// and each piece a parent completes is a line on each of them, so this path
// runs as often as the piece path: like the piece client it reads into one
// static buffer and parses nothing but the head, the chunk framing and the
// lines (an HTTP client library's parser, body stream and async iterator
// cost more than the messages).

// Reads land here and are valid only during the callback (one at a time).
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export interface SyncStreamOptions {
  host: string;
  port: number;
  path: string;
  connectTimeoutMs: number;
  // Connected, and no answer's head for this long: the parent is stuck.
  headTimeoutMs: number;
  // Nothing for this long (parents ping every 15 s): the parent is gone.
  idleTimeoutMs: number;
  signal: AbortSignal;
  // Names the parent in errors.
  label: string;
}

const enum Body {
  Head,
  // Chunked: reading a chunk-size line; then its data; then the CRLF after it.
  ChunkSize,
  ChunkData,
  ChunkEnd,
  // Delimited by content-length, or by the parent closing the connection.
  Plain,
  Ended,
}

const MAX_SIZE_LINE = 1024;

// Calls onMessage for each message until it returns true (the caller has
// what it waited for); resolves then, or when the parent ends the body.
// Rejects on a connection failure, a non-200 answer, or malformed framing or
// lines.
export function readSyncStream(opts: SyncStreamOptions, onMessage: (msg: SyncMessage) => boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let state = Body.Head;
    const heads = new HeadReader();
    let remaining = 0;
    let sizeLine = "";
    let chunkEndSeen = 0;
    let settled = false;
    let stop = false;
    const splitter = new SyncLineSplitter((msg) => {
      if (!stop && onMessage(msg)) stop = true;
    });

    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      opts.signal.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(err);
    };
    const finish = (): void => {
      if (settled) return;
      settled = true;
      opts.signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve();
    };
    const broken = (why: string): DamselflyError => new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${opts.label}'s sync stream: ${why}`);
    const onAbort = (): void => fail(opts.signal.reason instanceof Error ? opts.signal.reason : new Error("aborted"));

    const body = (chunk: Buffer): void => {
      splitter.push(chunk);
      if (stop) finish();
    };

    // Returns false once the connection is done with.
    const onRead = (n: number, buf: Buffer): boolean => {
      if (settled) return false;
      let data = buf.subarray(0, n);
      try {
        if (state === Body.Head) {
          const got = heads.take(data);
          if (got === "partial") return true;
          if (got === "too-long") throw broken("response head is too long");
          if (got === "malformed") throw broken("malformed HTTP response");
          const parsed = got.head;
          if (parsed.status !== 200) {
            throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${opts.label} answered sync with HTTP ${parsed.status}`, { temporary: parsed.status === 404 });
          }
          socket.setTimeout(opts.idleTimeoutMs);
          if (parsed.chunked) state = Body.ChunkSize;
          else {
            state = Body.Plain;
            remaining = parsed.contentLength;
          }
          data = got.rest;
        }
        let at = 0;
        while (at < data.length && !settled) {
          switch (state) {
            case Body.Plain: {
              const take = data.subarray(at);
              if (remaining >= 0) {
                if (take.length > remaining) throw broken("more bytes than the response's length");
                remaining -= take.length;
              }
              at = data.length;
              body(take);
              if (remaining === 0 && !settled) state = Body.Ended;
              break;
            }
            case Body.ChunkSize: {
              const nl = data.indexOf(0x0a, at);
              const part = data.toString("latin1", at, nl < 0 ? data.length : nl);
              sizeLine += part;
              if (sizeLine.length > MAX_SIZE_LINE) throw broken("chunk size line is too long");
              if (nl < 0) {
                at = data.length;
                break;
              }
              at = nl + 1;
              const m = /^([0-9a-fA-F]{1,12})(?:;[^\r]*)?\r$/.exec(sizeLine);
              sizeLine = "";
              if (!m) throw broken("malformed chunk size");
              remaining = parseInt(m[1]!, 16);
              // The last chunk: trailers, if any, do not matter to us.
              state = remaining === 0 ? Body.Ended : Body.ChunkData;
              break;
            }
            case Body.ChunkData: {
              const take = Math.min(remaining, data.length - at);
              const part = data.subarray(at, at + take);
              at += take;
              remaining -= take;
              if (remaining === 0) {
                state = Body.ChunkEnd;
                chunkEndSeen = 0;
              }
              body(part);
              break;
            }
            case Body.ChunkEnd: {
              const c = data[at++]!;
              if (c !== (chunkEndSeen === 0 ? 0x0d : 0x0a)) throw broken("malformed chunk framing");
              if (++chunkEndSeen === 2) state = Body.ChunkSize;
              break;
            }
            case Body.Ended:
              at = data.length;
              break;
          }
        }
        if (state === Body.Ended && !settled) finish();
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
        return false;
      }
      return !settled;
    };

    const socket = net.connect({
      host: opts.host,
      port: opts.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => onRead(n, buf as Buffer) },
    });
    if (opts.signal.aborted) return onAbort();
    opts.signal.addEventListener("abort", onAbort, { once: true });
    socket.setTimeout(opts.connectTimeoutMs, () => fail(broken(state === Body.Head ? "no answer in time" : "parent went quiet")));
    socket.on("connect", () => socket.setTimeout(opts.headTimeoutMs));
    socket.on("error", (err) => fail(broken(err.message)));
    // The parent closing mid-stream: a close-delimited body ends here, any
    // other was cut short (the caller decides whether it had what it needed).
    socket.on("end", () => (state === Body.Plain && remaining < 0 ? finish() : fail(broken("closed early"))));
    socket.on("close", () => fail(broken("closed early")));
    const host = opts.host.includes(":") ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
    socket.write(`GET ${opts.path} HTTP/1.1\r\nhost: ${host}\r\naccept: ${SYNC_CONTENT_TYPE}\r\n\r\n`);
  });
}
