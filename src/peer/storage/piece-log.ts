import { open, type FileHandle } from "node:fs/promises";
import { STORE_FILE_MODE } from "./modes.js";

export interface PieceInfo {
  number: number;
  crc: number;
  length: number;
}

// A task's `pieces.log`: an append-only list of verified pieces ("<n> <crc>
// <length>"; "-<n>" drops one), so a crash loses at most the piece being
// written. Appends are serialised so lines never interleave. The file stays
// open while pieces arrive (one open per piece cost more than the write) and
// is closed when the task is done.
export class PieceLog {
  private fh: FileHandle | undefined;
  private queue: Promise<void> = Promise.resolve();

  // `use`: called before each append; throws when the task may no longer
  // write (it was removed).
  constructor(
    private readonly path: string,
    private readonly use: () => void,
  ) {}

  get isOpen(): boolean {
    return this.fh !== undefined;
  }

  added(p: PieceInfo): Promise<void> {
    return this.append(`${p.number} ${p.crc} ${p.length}\n`);
  }

  dropped(n: number): Promise<void> {
    return this.append(`-${n}\n`);
  }

  private append(line: string): Promise<void> {
    this.queue = this.queue.then(async () => {
      this.use();
      this.fh ??= await open(this.path, "a", STORE_FILE_MODE);
      await this.fh.write(line);
    });
    return this.queue;
  }

  // After the appends queued so far; never rejects.
  close(): Promise<void> {
    this.queue = this.queue
      .catch(() => undefined)
      .then(async () => {
        const fh = this.fh;
        this.fh = undefined;
        await fh?.close();
      });
    return this.queue.catch(() => undefined);
  }

  // Parses a log; a line cut short by a crash is ignored.
  static parse(text: string): Map<number, PieceInfo> {
    const pieces = new Map<number, PieceInfo>();
    for (const line of text.split("\n")) {
      const del = /^-(\d+)$/.exec(line);
      if (del) {
        pieces.delete(Number(del[1]));
        continue;
      }
      const m = /^(\d+) (\d+) (\d+)$/.exec(line);
      if (m) pieces.set(Number(m[1]), { number: Number(m[1]), crc: Number(m[2]), length: Number(m[3]) });
    }
    return pieces;
  }
}
