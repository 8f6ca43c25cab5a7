import net from "node:net";
import tls from "node:tls";
import { DamselflyError } from "../../common/errors.js";
import { HeadReader } from "./http1-head.js";

// The piece data plane's client: plain HTTP/1.1 GETs of whole pieces from one
// parent over a few keep-alive connections, nothing else. A child streams
// from many parents at once, each connection at a fraction of its link, so a
// piece arrives in hundreds of reads; what each read costs in JavaScript is
// most of the daemon's CPU per byte. Here a read lands in one static buffer
// (no allocation, no copy into a parser's memory and back out), goes straight
// to the handler, and the response head is the only thing parsed. Everything
// else the daemon speaks over HTTP still goes through undici.

// Reads land here and are valid only during the onData call: every socket of
// the process shares it (callbacks run one at a time).
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

export interface PieceResponseHandler {
  // The response head: a status, the body length the parent announced, and
  // the piece's signed digest record (with TLS).
  onStart(status: number, contentLength: number, digest?: string): void;
  // A view into a shared buffer, valid only until this call returns: copy
  // what must outlive it.
  onData(chunk: Buffer): void;
  onEnd(): void;
  onError(err: Error): void;
}

// The caller's handle on a request in flight.
export interface PieceRequest {
  readonly paused: boolean;
  // untimed: a pause of our own choosing (a rate limit), not the parent
  // going quiet: the idle timeout does not run until resume().
  pause(untimed?: boolean): void;
  resume(): void;
  abort(reason: Error): void;
}

export interface PieceClientOptions {
  maxConnections: number;
  connectTimeoutMs: number;
  // No byte for this long while a request is in flight: the request fails.
  idleTimeoutMs: number;
  // An unused connection is closed after this long (well under the upload
  // server's keep-alive timeout).
  keepAliveMs?: number;
  // Mutual TLS: options for each new connection (asked at each connect, so
  // a rotated certificate is used from then on).
  tls?: (() => tls.ConnectionOptions) | undefined;
}

const enum Phase {
  Idle,
  Head,
  Body,
}

class Exchange implements PieceRequest {
  conn: Connection | undefined;
  done = false;
  // Set once a byte of the answer arrived: before that, a request that met a
  // connection the parent had just closed is safe to send again.
  answered = false;
  retried = false;
  private wantPause = false;

  constructor(
    readonly path: string,
    readonly handler: PieceResponseHandler,
    private readonly client: PieceClient,
  ) {}

  get paused(): boolean {
    return this.wantPause;
  }

  pause(untimed = false): void {
    this.wantPause = true;
    this.conn?.socket.pause();
    if (untimed) this.conn?.suspendTimeout();
  }

  resume(): void {
    this.wantPause = false;
    this.conn?.restoreTimeout();
    if (!this.done) this.conn?.socket.resume();
  }

  abort(reason: Error): void {
    if (this.done) return;
    if (this.conn) this.conn.fail(reason);
    else this.client.dequeue(this, reason);
  }

  finish(err?: Error): void {
    if (this.done) return;
    this.done = true;
    if (err) this.handler.onError(err);
    else this.handler.onEnd();
  }
}

class Connection {
  readonly socket: net.Socket;
  private phase = Phase.Idle;
  private readonly headReader = new HeadReader();
  private remaining = 0;
  private keepAlive = true;
  private connected = false;
  ex: Exchange | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  closed = false;
  private timeoutOff = false;
  // Requests this connection carried: a failure before any answer on a
  // reused connection is the parent closing an idle one, not a broken parent.
  uses = 0;

  constructor(
    private readonly client: PieceClient,
    host: string,
    port: number,
    private readonly opts: PieceClientOptions,
  ) {
    const onread = { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.onRead(n, buf as Buffer) };
    // Over TLS the reads land in the same buffer, decrypted (tls.connect
    // documents onread; its type does not list it).
    this.socket = opts.tls
      ? tls.connect({ ...opts.tls(), host, port, onread } as tls.ConnectionOptions).setNoDelay(true)
      : net.connect({ host, port, noDelay: true, onread });
    this.socket.setTimeout(opts.connectTimeoutMs, () => {
      this.fail(new DamselflyError("DF_ERR_PARENT_FAILED", this.connected ? "parent sent nothing in time" : "connecting to the parent timed out"));
    });
    this.socket.on(opts.tls ? "secureConnect" : "connect", () => {
      this.connected = true;
      this.socket.setTimeout(opts.idleTimeoutMs);
    });
    this.socket.on("error", (err) => this.fail(err));
    this.socket.on("close", () => this.fail(new Error("parent closed the connection")));
    this.socket.on("end", () => this.fail(new Error("parent closed the connection")));
  }

  send(ex: Exchange): void {
    this.clearIdle();
    this.restoreTimeout();
    this.ex = ex;
    ex.conn = this;
    this.uses++;
    this.phase = Phase.Head;
    this.headReader.reset();
    if (ex.paused) this.socket.pause();
    else this.socket.resume();
    this.socket.write(`GET ${ex.path} HTTP/1.1\r\nhost: ${this.client.hostHeader}\r\n\r\n`);
  }

  suspendTimeout(): void {
    if (this.timeoutOff || !this.connected) return;
    this.timeoutOff = true;
    this.socket.setTimeout(0);
  }

  restoreTimeout(): void {
    if (!this.timeoutOff || this.closed) return;
    this.timeoutOff = false;
    this.socket.setTimeout(this.opts.idleTimeoutMs);
  }

  // Ends the connection and, if a request is on it, that request: with a
  // retry on a fresh connection if the parent closed a reused idle one before
  // answering.
  fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.clearIdle();
    this.socket.destroy();
    this.client.forget(this);
    const ex = this.ex;
    this.ex = undefined;
    if (!ex || ex.done) return;
    ex.conn = undefined;
    if (this.uses > 1 && !ex.answered && !ex.retried) {
      ex.retried = true;
      this.client.requeue(ex);
      return;
    }
    ex.finish(err);
  }

  private onRead(n: number, buf: Buffer): boolean {
    const ex = this.ex;
    if (!ex || this.phase === Phase.Idle) {
      // Bytes nobody asked for: the stream is out of step.
      this.fail(new DamselflyError("DF_ERR_PARENT_FAILED", "parent sent bytes outside a response"));
      return false;
    }
    ex.answered = true;
    let chunk = buf.subarray(0, n);
    if (this.phase === Phase.Head) {
      const rest = this.takeHead(chunk, ex);
      if (rest === undefined) return true;
      chunk = rest;
    }
    if (chunk.length > this.remaining) {
      this.fail(new DamselflyError("DF_ERR_PARENT_FAILED", "parent sent more than the response's length"));
      return false;
    }
    if (chunk.length > 0) {
      this.remaining -= chunk.length;
      ex.handler.onData(chunk);
      if (ex.done) return false;
    }
    if (this.remaining === 0) this.complete(ex);
    return true;
  }

  // Gathers the response head; returns the body bytes that came with it, or
  // undefined while the head is incomplete (or the connection failed).
  private takeHead(chunk: Buffer, ex: Exchange): Buffer | undefined {
    const got = this.headReader.take(chunk);
    if (got === "partial") return undefined;
    if (got === "too-long" || got === "malformed") {
      this.fail(
        new DamselflyError("DF_ERR_PARENT_FAILED", got === "too-long" ? "parent's response head is too long" : "parent sent a malformed HTTP response"),
      );
      return undefined;
    }
    const parsed = got.head;
    this.keepAlive = parsed.keepAlive;
    if (parsed.contentLength < 0) {
      // Only error answers come without a length: the status is all we need,
      // and the connection cannot be reused.
      this.keepAlive = false;
      if (parsed.status === 200) {
        this.fail(new DamselflyError("DF_ERR_PARENT_FAILED", "parent answered a piece without a content length"));
        return undefined;
      }
      ex.handler.onStart(parsed.status, -1);
      this.remaining = 0;
      this.complete(ex);
      return undefined;
    }
    this.remaining = parsed.contentLength;
    this.phase = Phase.Body;
    ex.handler.onStart(parsed.status, parsed.contentLength, parsed.digest);
    if (ex.done) return undefined;
    return got.rest;
  }

  private complete(ex: Exchange): void {
    this.phase = Phase.Idle;
    this.ex = undefined;
    ex.conn = undefined;
    if (this.keepAlive) {
      this.socket.resume();
      this.idleTimer = setTimeout(() => this.fail(new Error("idle")), this.opts.keepAliveMs ?? 30_000);
      this.idleTimer.unref();
      this.client.release(this);
    } else {
      this.closed = true;
      this.socket.destroy();
      this.client.forget(this);
    }
    ex.finish();
  }

  private clearIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

export class PieceClient {
  readonly hostHeader: string;
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly queue: Exchange[] = [];
  private closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly opts: PieceClientOptions,
  ) {
    this.hostHeader = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  }

  get(path: string, handler: PieceResponseHandler): PieceRequest {
    const ex = new Exchange(path, handler, this);
    if (this.closed) {
      queueMicrotask(() => ex.finish(new DamselflyError("DF_ERR_PARENT_FAILED", "connection to the parent is closed")));
      return ex;
    }
    this.queue.push(ex);
    this.dispatch();
    return ex;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new DamselflyError("DF_ERR_PARENT_FAILED", "connection to the parent is closed");
    for (const ex of this.queue.splice(0)) ex.finish(err);
    for (const c of [...this.all]) c.fail(err);
  }

  // For Exchange and Connection only.
  dequeue(ex: Exchange, reason: Error): void {
    const i = this.queue.indexOf(ex);
    if (i >= 0) this.queue.splice(i, 1);
    ex.finish(reason);
  }

  requeue(ex: Exchange): void {
    if (this.closed) return ex.finish(new DamselflyError("DF_ERR_PARENT_FAILED", "connection to the parent is closed"));
    this.queue.unshift(ex);
    this.dispatch();
  }

  release(c: Connection): void {
    this.idle.push(c);
    this.dispatch();
  }

  forget(c: Connection): void {
    this.all.delete(c);
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    // A slot opened up for whoever waits.
    if (!this.closed) queueMicrotask(() => this.dispatch());
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let c = this.idle.pop();
      if (!c) {
        if (this.all.size >= this.opts.maxConnections) return;
        c = new Connection(this, this.host, this.port, this.opts);
        this.all.add(c);
      }
      c.send(this.queue.shift()!);
    }
  }
}
