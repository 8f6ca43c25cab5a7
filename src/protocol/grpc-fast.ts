import http2 from "node:http2";
import type { Caller } from "./caller.js";
import { fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { toConnectError } from "./errors.js";
import { encodeEnvelope, EnvelopeReader, EnvelopeTooLargeError, FLAG_COMPRESSED, type EnvelopeSink } from "./envelope.js";

// Where responses of one call go. AsyncQueue has the same shape, so the same
// code can serve a call through Connect too.
export interface BidiSink<O> {
  // False once the call is over.
  push(resp: O): boolean;
  // The same for a response already encoded (a hand-written encoder on a hot
  // path). Absent where messages must stay objects (Connect's path): the
  // caller then builds the message and uses push().
  pushEncoded?(bytes: Uint8Array): boolean;
  // Ends the call: OK, or the error's status (a ConnectError keeps its code
  // and metadata).
  close(error?: unknown): void;
  // The call's first message is taken: send the response headers now, before
  // any answer (the client's liveness deadline). Absent where headers cannot
  // go ahead of a message (Connect's path).
  accept?(): void;
  readonly isClosed: boolean;
}

// What the method does with one call.
export interface BidiCall<I> {
  message(req: I): void;
  // The client half-closed.
  end(): void;
  // The call is gone (reset, connection lost, or ended by close()).
  gone(): void;
}

// Served on the raw HTTP/2 stream, not node's compatibility request and
// response: those two objects (a Readable and a Writable wrapped around the
// stream, with their listeners) per call, and a stream hop per message, were
// ~8% of the scheduler's CPU at thousands of calls a second.
export interface FastRoute {
  readonly path: string;
  // False: not for this route (another protocol or an option it does not
  // support); the request goes to Connect.
  // caller: who is on the other end of the connection (caller.ts).
  serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, caller: Caller): boolean;
}

// A frame may be at most this big (Connect's default readMaxBytes is far
// higher; announce messages are a few hundred bytes).
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
const CONTENT_TYPE = /^application\/grpc(\+proto)?$/i;

// Plain gRPC (binary protobuf, uncompressed, no deadline) served straight
// on node:http2, for the scheduler's hot methods. Connect's generic pipeline
// (async-iterable chains, abort signals and a DOMException per call, an
// envelope copy per message) cost the scheduler more CPU than its own work;
// anything else, e.g. the Connect protocol, gRPC-web, compression or a
// deadline, is left to Connect.
function isPlainGrpc(h: http2.IncomingHttpHeaders): boolean {
  const enc = h["grpc-encoding"];
  return (
    h[":method"] === "POST" &&
    CONTENT_TYPE.test(String(h["content-type"] ?? "")) &&
    (enc === undefined || enc === "identity") &&
    h["grpc-timeout"] === undefined
  );
}

// A hand-written decoder for a method's hottest messages: undefined leaves
// the message to fromBinary.
export type FastDecoder<I extends DescMessage> = (bytes: Uint8Array) => MessageShape<I> | undefined;

// One bidirectional-streaming method.
export function grpcBidiRoute<I extends DescMessage, O extends DescMessage>(
  path: string,
  input: I,
  output: O,
  // headers: the call's request headers (trace context).
  open: (sink: BidiSink<MessageShape<O>>, headers: http2.IncomingHttpHeaders, caller: Caller) => BidiCall<MessageShape<I>>,
  decode?: FastDecoder<I>,
): FastRoute {
  return {
    path,
    serve(stream, headers, caller) {
      if (!isPlainGrpc(headers)) return false;
      serveCall(stream, input, output, (sink) => open(sink, headers, caller), decode);
      return true;
    },
  };
}

// One unary method: the call's single message in, one response or an error
// out.
export function grpcUnaryRoute<I extends DescMessage, O extends DescMessage>(
  path: string,
  input: I,
  output: O,
  impl: (req: MessageShape<I>, caller: Caller) => MessageShape<O> | Promise<MessageShape<O>>,
): FastRoute {
  return {
    path,
    serve(stream, headers, caller) {
      if (!isPlainGrpc(headers)) return false;
      let got: MessageShape<I> | undefined;
      serveCall(stream, input, output, (sink) => ({
        message(m) {
          if (got !== undefined) return sink.close(new ConnectError("unary call with more than one message", Code.Unimplemented));
          got = m;
        },
        end() {
          if (got === undefined) return sink.close(new ConnectError("unary call without a message", Code.Unimplemented));
          const m = got;
          // A thrown error and a rejected promise end the call alike.
          void (async () => impl(m, caller))().then(
            (resp) => {
              sink.push(resp);
              sink.close();
            },
            (err: unknown) => sink.close(err),
          );
        },
        gone() {},
      }));
      return true;
    },
  };
}

function statusFields(error: unknown): Record<string, string> {
  const status = setTrailerStatus(new Headers(), error instanceof ConnectError ? error : toConnectError(error));
  const fields: Record<string, string> = {};
  status.forEach((v, k) => (fields[k] = v));
  return fields;
}

// The stream's listeners are shared functions that find their call here:
// per-call closures (eight of them, with their contexts) were a good part of
// what every open AnnouncePeer stream kept on the scheduler's heap, and all
// of it survives young-generation GCs for as long as the stream is open.
const kCall = Symbol("damselfly.grpcCall");
type CallStream = http2.ServerHttp2Stream & { [kCall]?: ServerCall<DescMessage, DescMessage> };

function onData(this: CallStream, chunk: Buffer): void {
  this[kCall]?.data(chunk);
}
function onEnd(this: CallStream): void {
  this[kCall]?.ended();
}
// Reset by the client, or the connection is gone: nothing more to write.
function onClose(this: CallStream): void {
  this[kCall]?.streamClosed();
}
function onWantTrailers(this: CallStream): void {
  this.sendTrailers(this[kCall]?.trailers ?? {});
  if (this[kCall]?.refused) setImmediate(stopReading, this);
}
// A refused request still being sent: RST_STREAM(NO_ERROR) after the answer
// tells the client to stop sending (RFC 9113, 8.1) rather than have us read
// and drop the rest of it.
function stopReading(stream: http2.ServerHttp2Stream): void {
  if (!stream.readableEnded && !stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
}
function ignore(): void {}

function serveCall<I extends DescMessage, O extends DescMessage>(
  stream: http2.ServerHttp2Stream,
  input: I,
  output: O,
  open: (sink: BidiSink<MessageShape<O>>) => BidiCall<MessageShape<I>>,
  decode?: FastDecoder<I>,
): void {
  const c = new ServerCall(stream, input, output, decode);
  c.call = open(c);
  (stream as CallStream)[kCall] = c as unknown as ServerCall<DescMessage, DescMessage>;
  stream.on("wantTrailers", onWantTrailers);
  stream.on("data", onData);
  stream.on("end", onEnd);
  stream.on("close", onClose);
  stream.on("error", ignore);
}

class ServerCall<I extends DescMessage, O extends DescMessage> implements BidiSink<MessageShape<O>>, EnvelopeSink {
  call: BidiCall<MessageShape<I>> | undefined;
  // The status, once close() has it: sent as trailers when the stream asks.
  trailers: Record<string, string> | undefined;
  // Ended for a request it will not read (stopReading once answered).
  refused = false;
  private headersSent = false;
  private closed = false;
  private goneCalled = false;
  private readonly reader = new EnvelopeReader(MAX_MESSAGE_BYTES);

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly input: I,
    private readonly output: O,
    private readonly decode: FastDecoder<I> | undefined,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  push(resp: MessageShape<O>): boolean {
    return this.pushEncoded(toBinary(this.output, resp));
  }

  pushEncoded(bytes: Uint8Array): boolean {
    if (!this.respond()) return false;
    this.stream.write(encodeEnvelope(bytes));
    return true;
  }

  accept(): void {
    this.respond();
  }

  // Sends the response headers once; false when the stream can take no more.
  private respond(): boolean {
    const stream = this.stream;
    // A stream reset by the client is closed before it is destroyed:
    // respond() and write() would throw or fail.
    if (this.closed || stream.destroyed || stream.closed) return false;
    if (!this.headersSent) {
      this.headersSent = true;
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
    }
    return true;
  }

  close(error?: unknown, refuse = false): void {
    if (this.closed) return;
    this.closed = true;
    this.refused = refuse;
    const stream = this.stream;
    // OK is what setTrailerStatus writes for no error, without a Headers
    // object per call.
    const fields: Record<string, string> = error === undefined ? { "grpc-status": "0" } : statusFields(error);
    if (!stream.destroyed && !stream.closed) {
      if (this.headersSent) {
        this.trailers = fields;
        stream.end();
      } else {
        // Trailers-only: the status rides in the headers.
        this.headersSent = true;
        stream.respond({ ":status": 200, "content-type": "application/grpc+proto", ...fields }, { endStream: true });
        if (refuse) stopReading(stream);
      }
    }
    this.gone();
  }

  data(chunk: Buffer): void {
    if (this.closed) return;
    try {
      this.reader.push(chunk, this);
    } catch (e) {
      if (!(e instanceof EnvelopeTooLargeError)) throw e;
      this.close(new ConnectError(e.message, Code.ResourceExhausted), true);
    }
  }

  // One message of the call (EnvelopeSink).
  envelope(flags: number, bytes: Buffer): boolean {
    if ((flags & FLAG_COMPRESSED) !== 0) {
      this.close(new ConnectError("compressed message without grpc-encoding", Code.Internal));
      return false;
    }
    let msg: MessageShape<I>;
    try {
      msg = this.decode?.(bytes) ?? fromBinary(this.input, bytes);
    } catch (e) {
      this.close(new ConnectError(`cannot parse the request: ${e instanceof Error ? e.message : String(e)}`, Code.InvalidArgument));
      return false;
    }
    this.call!.message(msg);
    return !this.closed;
  }

  ended(): void {
    if (this.closed) return;
    if (this.reader.partial) return this.close(new ConnectError("request ended inside a message", Code.InvalidArgument));
    this.call!.end();
  }

  streamClosed(): void {
    this.closed = true;
    this.gone();
  }

  private gone(): void {
    if (this.goneCalled) return;
    this.goneCalled = true;
    this.call!.gone();
  }
}
