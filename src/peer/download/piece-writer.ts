import { createHash, type Hash } from "node:crypto";
import { crc32Update } from "../../common/pieces.js";
import { buffers } from "../buffer-pool.js";
// Where a piece's bytes go: the task file, or memory (an endgame duplicate).
export interface PieceSink {
  // The chunks may be reused once the returned promise settles.
  writev(offset: number, chunks: Uint8Array[]): Promise<void>;
}

// A piece held in memory until it is known to be wanted.
export class MemorySink implements PieceSink {
  readonly buf: Buffer;

  constructor(
    private readonly base: number,
    length: number,
  ) {
    this.buf = Buffer.allocUnsafe(length);
  }

  writev(offset: number, chunks: Uint8Array[]): Promise<void> {
    let at = offset - this.base;
    for (const c of chunks) {
      this.buf.set(c, at);
      at += c.length;
    }
    return Promise.resolve();
  }
}

const FLUSH_AT = 1024 * 1024;
// Staging buffers (FLUSH_AT bytes, or a smaller piece's length) come from
// the daemon's pool (buffer-pool.ts) and go back once written.
// Default cap on bytes handed to the file system but not yet written: network
// reads go on while earlier bytes are written, without unbounded memory.
const MAX_UNWRITTEN = 4 * 1024 * 1024;

// Streams one piece's bytes into the task file at the piece's offset,
// copying network chunks into 1 MiB staging buffers written one call each,
// and computing the CRC (and with `sha256`, the SHA-256 a signed digest
// is checked against or made from) on the way. The piece becomes visible only when the caller marks it after
// checking length and CRC; until then its region may hold anything.
export class PieceWriter {
  crc = 0;
  received = 0;
  // Bytes wait here (a copy) until FLUSH_AT of them make one write.
  private stage: Buffer | undefined;
  private staged = 0;
  private flushedTo: number;
  private writing: Promise<void> = Promise.resolve();
  private unwritten = 0;
  private error: unknown;
  private readonly hash: Hash | undefined;

  constructor(
    private readonly task: PieceSink,
    readonly offset: number,
    readonly expectedLength: number,
    // Many pieces stream in at once from parents: each gets a small window.
    private readonly maxUnwritten = MAX_UNWRITTEN,
    sha256 = false,
  ) {
    this.flushedTo = offset;
    this.hash = sha256 ? createHash("sha256") : undefined;
  }

  get hashing(): boolean {
    return this.hash !== undefined;
  }

  // Lower-case hex SHA-256 of the bytes taken (once, when complete).
  sha256(): string {
    if (!this.hash) throw new Error("PieceWriter made without sha256");
    return this.hash.digest("hex");
  }

  // Takes the bytes of `chunk` that belong to this piece and returns how many
  // it took (the rest belongs to the next piece when a whole file streams in).
  async push(chunk: Uint8Array): Promise<number> {
    const took = this.accept(chunk);
    if (this.overWindow) await this.writing;
    if (this.error !== undefined) throw this.error;
    return took;
  }

  // push() for callback-driven sources: never waits, and copies what it
  // takes (the piece client hands out views of a buffer it reuses). While
  // overWindow holds, the caller pauses its source until written() settles.
  accept(chunk: Uint8Array): number {
    const room = this.expectedLength - this.received;
    let take = chunk.length <= room ? chunk : chunk.subarray(0, room);
    if (take.length === 0) return 0;
    this.crc = crc32Update(take, this.crc);
    this.hash?.update(take);
    this.received += take.length;
    while (take.length > 0) {
      if (!this.stage) this.stage = buffers.get(Math.min(FLUSH_AT, this.expectedLength - this.flushedTo + this.offset));
      const n = Math.min(take.length, this.stage.length - this.staged);
      this.stage.set(n === take.length ? take : take.subarray(0, n), this.staged);
      this.staged += n;
      take = take.subarray(n);
      if (this.staged === this.stage.length) this.startWrite();
    }
    return chunk.length <= room ? chunk.length : room;
  }

  get overWindow(): boolean {
    return this.unwritten > this.maxUnwritten;
  }

  // Settles when the writes started so far are done.
  written(): Promise<void> {
    return this.writing;
  }

  get complete(): boolean {
    return this.received === this.expectedLength;
  }

  // Resolves once every byte pushed so far is written.
  async flush(): Promise<void> {
    this.startWrite();
    await this.writing;
    if (this.error !== undefined) throw this.error;
  }

  private startWrite(): void {
    if (!this.stage || this.staged === 0) return;
    const stage = this.stage;
    const chunks = [this.staged === stage.length ? stage : stage.subarray(0, this.staged)];
    const bytes = this.staged;
    const at = this.flushedTo;
    this.stage = undefined;
    this.staged = 0;
    this.flushedTo += bytes;
    this.unwritten += bytes;
    this.writing = this.writing.then(async () => {
      try {
        if (this.error === undefined) await this.task.writev(at, chunks);
      } catch (err) {
        this.error = err;
      } finally {
        this.unwritten -= bytes;
        buffers.put(stage);
      }
    });
  }
}
