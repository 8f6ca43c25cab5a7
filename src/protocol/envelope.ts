// The length-prefixed envelope gRPC and the Connect streaming protocol share:
// a flags byte, a big-endian uint32 length, the message. One reader and one
// writer for every hand-driven stream: the scheduler's gRPC fast path, the
// `get` client's Connect stream and the scheduler benchmark's client.
// https://connectrpc.com/docs/protocol/#streaming-request

export const ENVELOPE_HEAD = 5;
// gRPC: the message is compressed. Connect: the same bit.
export const FLAG_COMPRESSED = 0x01;
// Connect: the end-of-stream message (JSON), last on a response.
export const FLAG_END_STREAM = 0x02;

export function encodeEnvelope(message: Uint8Array, flags = 0): Buffer {
  const b = Buffer.allocUnsafe(ENVELOPE_HEAD + message.length);
  b[0] = flags;
  b.writeUInt32BE(message.length, 1);
  b.set(message, ENVELOPE_HEAD);
  return b;
}

export class EnvelopeTooLargeError extends Error {
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`message of ${bytes} bytes is over the ${limit}-byte limit`);
  }
}

// Cuts a byte stream into envelopes as chunks arrive. A message split over
// many reads (a 1 MiB chunk arrives in 16 KiB DATA frames) is copied once,
// when it is whole. Pushed chunks are kept, not copied, until then.
// An object rather than a callback: a long-lived call keeps no closure.
export interface EnvelopeSink {
  envelope(flags: number, message: Buffer): boolean | void;
}

export class EnvelopeReader {
  // The start of an envelope not yet whole (none: undefined, so a call that
  // only ever gets whole envelopes allocates nothing per chunk).
  private parts: Buffer[] | undefined;
  private size = 0;
  // Bytes needed before the next envelope can be whole.
  private need = ENVELOPE_HEAD;

  constructor(private readonly maxBytes: number) {}

  // True while part of an envelope is held.
  get partial(): boolean {
    return this.parts !== undefined;
  }

  // Gives each whole envelope to the sink, in order; a false return stops
  // the reading (what is left is dropped). Throws EnvelopeTooLargeError.
  push(chunk: Buffer, sink: EnvelopeSink): void {
    let b = chunk;
    if (this.parts) {
      this.parts.push(chunk);
      this.size += chunk.length;
      if (this.size < this.need) return;
      b = Buffer.concat(this.parts, this.size);
      this.parts = undefined;
    }
    this.need = ENVELOPE_HEAD;
    while (b.length >= ENVELOPE_HEAD) {
      const len = b.readUInt32BE(1);
      if (len > this.maxBytes) throw new EnvelopeTooLargeError(len, this.maxBytes);
      if (b.length < ENVELOPE_HEAD + len) {
        this.need = ENVELOPE_HEAD + len;
        break;
      }
      const flags = b[0]!;
      const message = b.subarray(ENVELOPE_HEAD, ENVELOPE_HEAD + len);
      b = b.subarray(ENVELOPE_HEAD + len);
      if (sink.envelope(flags, message) === false) return;
    }
    if (b.length > 0) {
      this.parts = [b];
      this.size = b.length;
    }
  }
}
