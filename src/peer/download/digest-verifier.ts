import { DamselflyError } from "../../common/errors.js";
import { Digester, digestMismatch, type Digest } from "../../common/digest.js";
import type { LocalTask } from "../storage/local-task.js";

// Hashes a task's content in order while it downloads: each piece is read
// back (from the page cache) as soon as every piece before it is stored, so
// the whole-content check finishes right after the last piece instead of
// re-reading the file at the end, and uses one reused buffer.
export class DigestVerifier {
  private next = 0;
  private busy = false;
  private closed = false;
  private readonly hasher: Digester;
  private buf: Buffer | undefined;
  private settle!: { resolve: () => void; reject: (e: DamselflyError) => void };
  readonly result: Promise<void>;

  constructor(
    private readonly task: LocalTask,
    private readonly expected: Digest,
  ) {
    this.hasher = new Digester(expected.algorithm);
    this.result = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.result.catch(() => undefined);
    task.on("piece", this.kick);
    task.on("info", this.kick);
    this.kick();
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
      while (!this.closed && t.infoKnown && this.next < t.totalPieces && t.pieces.has(this.next)) {
        const info = t.pieces.get(this.next)!;
        const { offset } = t.pieceRange(this.next);
        if (!this.buf || this.buf.length < info.length) this.buf = Buffer.allocUnsafe(t.meta.pieceLength);
        const data = await t.read(offset, info.length, this.buf.subarray(0, info.length));
        this.hasher.update(data);
        this.next++;
      }
      if (!this.closed && t.infoKnown && this.next === t.totalPieces) {
        this.close();
        const actual = this.hasher.digest();
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
