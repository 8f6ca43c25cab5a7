import net from "node:net";
import tls from "node:tls";
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
  // Mutual TLS: options for the connection (asked when it is made).
  tls?: (() => tls.ConnectionOptions) | undefined;
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
    new SyncStreamReader(opts, onMessage, resolve, reject).start();
  });
}

// One sync stream: the socket, the response head, the body's framing.
class SyncStreamReader {
  private state = Body.Head;
  private readonly heads = new HeadReader();
  // Bytes left in the chunk, or in a content-length body (-1: delimited by
  // the parent closing).
  private remaining = 0;
  private sizeLine = "";
  private chunkEndSeen = 0;
  private settled = false;
  private stop = false;
  private readonly splitter: SyncLineSplitter;
  private socket!: net.Socket;

  constructor(
    private readonly opts: SyncStreamOptions,
    onMessage: (msg: SyncMessage) => boolean,
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.splitter = new SyncLineSplitter((msg) => {
      if (!this.stop && onMessage(msg)) this.stop = true;
    });
  }

  start(): void {
    const opts = this.opts;
    const onread = { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer) };
    const { port } = opts;
    // tls.connect documents onread; its type does not list it.
    const socket = (this.socket = opts.tls
      ? tls.connect({ ...opts.tls(), host: opts.host, port, onread } as tls.ConnectionOptions).setNoDelay(true)
      : net.connect({ host: opts.host, port, noDelay: true, onread }));
    if (opts.signal.aborted) return this.onAbort();
    opts.signal.addEventListener("abort", this.onAbort, { once: true });
    socket.setTimeout(opts.connectTimeoutMs, () => this.fail(this.broken(this.state === Body.Head ? "no answer in time" : "parent went quiet")));
    socket.on(opts.tls ? "secureConnect" : "connect", () => socket.setTimeout(opts.headTimeoutMs));
    socket.on("error", (err) => this.fail(this.broken(err.message)));
    // The parent closing mid-stream: a close-delimited body ends here, any
    // other was cut short (the caller decides whether it had what it needed).
    socket.on("end", () => (this.state === Body.Plain && this.remaining < 0 ? this.finish() : this.fail(this.broken("closed early"))));
    socket.on("close", () => this.fail(this.broken("closed early")));
    const host = opts.host.includes(":") ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
    socket.write(`GET ${opts.path} HTTP/1.1\r\nhost: ${host}\r\naccept: ${SYNC_CONTENT_TYPE}\r\n\r\n`);
  }

  private readonly onAbort = (): void => this.fail(this.opts.signal.reason instanceof Error ? this.opts.signal.reason : new Error("aborted"));

  private fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.opts.signal.removeEventListener("abort", this.onAbort);
    this.socket.destroy();
    this.reject(err);
  }

  private finish(): void {
    if (this.settled) return;
    this.settled = true;
    this.opts.signal.removeEventListener("abort", this.onAbort);
    this.socket.destroy();
    this.resolve();
  }

  private broken(why: string): DamselflyError {
    return new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.opts.label}'s sync stream: ${why}`);
  }

  private body(chunk: Buffer): void {
    this.splitter.push(chunk);
    if (this.stop) this.finish();
  }

  // Returns false once the connection is done with.
  private onRead(n: number, buf: Buffer): boolean {
    if (this.settled) return false;
    let data: Buffer | undefined = buf.subarray(0, n);
    try {
      if (this.state === Body.Head) data = this.head(data);
      if (data === undefined) return true;
      let at = 0;
      while (at < data.length && !this.settled) at = this.framing(data, at);
      if (this.state === Body.Ended && !this.settled) this.finish();
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
    return !this.settled;
  }

  // Reads the response head; returns the bytes after it, or undefined while
  // it is incomplete.
  private head(data: Buffer): Buffer | undefined {
    const got = this.heads.take(data);
    if (got === "partial") return undefined;
    if (got === "too-long") throw this.broken("response head is too long");
    if (got === "malformed") throw this.broken("malformed HTTP response");
    const parsed = got.head;
    if (parsed.status !== 200) {
      throw new DamselflyError("DF_ERR_PARENT_FAILED", `parent ${this.opts.label} answered sync with HTTP ${parsed.status}`, {
        temporary: parsed.status === 404,
      });
    }
    this.socket.setTimeout(this.opts.idleTimeoutMs);
    if (parsed.chunked) this.state = Body.ChunkSize;
    else {
      this.state = Body.Plain;
      this.remaining = parsed.contentLength;
    }
    return got.rest;
  }

  // Takes the body bytes of `data` from `at` on, up to the next framing
  // boundary; returns where it stopped.
  private framing(data: Buffer, at: number): number {
    switch (this.state) {
      case Body.Plain: {
        const take = data.subarray(at);
        if (this.remaining >= 0) {
          if (take.length > this.remaining) throw this.broken("more bytes than the response's length");
          this.remaining -= take.length;
        }
        this.body(take);
        if (this.remaining === 0 && !this.settled) this.state = Body.Ended;
        return data.length;
      }
      case Body.ChunkSize:
        return this.chunkSize(data, at);
      case Body.ChunkData: {
        const take = Math.min(this.remaining, data.length - at);
        const part = data.subarray(at, at + take);
        this.remaining -= take;
        if (this.remaining === 0) {
          this.state = Body.ChunkEnd;
          this.chunkEndSeen = 0;
        }
        this.body(part);
        return at + take;
      }
      case Body.ChunkEnd: {
        const c = data[at]!;
        if (c !== (this.chunkEndSeen === 0 ? 0x0d : 0x0a)) throw this.broken("malformed chunk framing");
        if (++this.chunkEndSeen === 2) this.state = Body.ChunkSize;
        return at + 1;
      }
      default:
        return data.length;
    }
  }

  private chunkSize(data: Buffer, at: number): number {
    const nl = data.indexOf(0x0a, at);
    this.sizeLine += data.toString("latin1", at, nl < 0 ? data.length : nl);
    if (this.sizeLine.length > MAX_SIZE_LINE) throw this.broken("chunk size line is too long");
    if (nl < 0) return data.length;
    const m = /^([0-9a-fA-F]{1,12})(?:;[^\r]*)?\r$/.exec(this.sizeLine);
    this.sizeLine = "";
    if (!m) throw this.broken("malformed chunk size");
    this.remaining = parseInt(m[1]!, 16);
    // The last chunk: trailers, if any, do not matter to us.
    this.state = this.remaining === 0 ? Body.Ended : Body.ChunkData;
    return nl + 1;
  }
}
