import { DamselflyError } from "../../common/errors.js";
import { Digester, digestMismatch, type Digest } from "../../common/digest.js";
import type { LocalTask } from "../storage/local-task.js";

// Hashes a task's content in order while it downloads, so the whole-content
// check finishes right after the last piece instead of re-reading the file
// at the end. Bytes that arrive in order (an origin stream) are hashed as they
// come; otherwise each stored piece is read back (from the page cache) as soon
// as everything before it is hashed, into one reused buffer.
export class DigestVerifier {
  // Bytes [0, hashed) went into the hasher.
  private hashed = 0;
  private busy = false;
  private closed = false;
  // Made once the task's length is known (gitsha1 hashes it first).
  private hasher: Digester | undefined;
  private buf: Buffer | undefined;
  private settle!: { resolve: () => void; reject: (e: DamselflyError) => void };
  readonly result: Promise<void>;

  constructor(
    private readonly task: LocalTask,
    private readonly expected: Digest,
  ) {
    this.result = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.result.catch(() => undefined);
    task.on("piece", this.kick);
    task.on("info", this.kick);
    this.kick();
  }

  // Bytes at `offset` as they arrive from a sequential source. Used only
  // when they continue exactly where hashing stands (and no read-back is
  // running); anything else is read back from the store later.
  feed(offset: number, chunk: Uint8Array): void {
    if (this.closed || this.busy || offset > this.hashed || offset + chunk.length <= this.hashed) return;
    const hasher = this.ready();
    if (!hasher) return;
    hasher.update(offset === this.hashed ? chunk : chunk.subarray(this.hashed - offset));
    this.hashed = offset + chunk.length;
  }

  private ready(): Digester | undefined {
    if (!this.hasher && this.task.infoKnown) this.hasher = new Digester(this.expected.algorithm, this.task.meta.contentLength);
    return this.hasher;
  }

  close(): void {
    this.closed = true;
    this.task.off("piece", this.kick);
    this.task.off("info", this.kick);
  }

  private readonly kick = (): void => {
    if (!this.busy && !this.closed) void this.run();
  };

  private async run(): Promise<void> {
    this.busy = true;
    const t = this.task;
    try {
      while (!this.closed && t.infoKnown && this.hashed < t.meta.contentLength) {
        const n = Math.floor(this.hashed / t.meta.pieceLength);
        if (!t.pieces.has(n)) break;
        const { offset, length } = t.pieceRange(n);
        const len = offset + length - this.hashed;
        if (!this.buf) this.buf = Buffer.allocUnsafe(t.meta.pieceLength);
        this.ready()!.update(await t.read(this.hashed, len, this.buf.subarray(0, len)));
        this.hashed += len;
      }
      if (!this.closed && t.infoKnown && this.hashed === t.meta.contentLength && t.pieces.size === t.totalPieces) {
        this.close();
        const actual = this.ready()!.digest();
        if (actual.hex === this.expected.hex) this.settle.resolve();
        else this.settle.reject(digestMismatch(this.expected, actual));
      }
    } catch (err) {
      this.close();
      this.settle.reject(DamselflyError.from(err));
    } finally {
      this.busy = false;
    }
  }
}
