import { open, type FileHandle } from "node:fs/promises";
import { STORE_FILE_MODE } from "./modes.js";
import { parsePieceRecord, type PieceRecord } from "../../protocol/data-plane.js";

export interface PieceInfo {
  number: number;
  crc: number;
  length: number;
  // With TLS: the piece's SHA-256 as its fetcher signed it, kept to be
  // relayed with the piece (a child checks it; no holder can make one).
  trust?: PieceRecord | undefined;
  // Taken from another peer (not kept in the log): already in the swarm, so
  // a seed's initial seeding does not offer it (upload/piece-offers.ts).
  fromPeer?: boolean;
}

// A task's `pieces.log`: an append-only list of verified pieces ("<n> <crc>
// <length>", followed by " <sha256> <fetcher> <sig>" for a piece with a
// signed digest; "-<n>" drops one), so a crash loses at most the piece being
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
    const t = p.trust;
    return this.append(t ? `${p.number} ${p.crc} ${p.length} ${t.sha256} ${t.fetcher} ${t.sig}\n` : `${p.number} ${p.crc} ${p.length}\n`);
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
      const m = /^(\d+) (\d+) (\d+)(?: (.+))?$/.exec(line);
      if (!m) continue;
      const p: PieceInfo = { number: Number(m[1]), crc: Number(m[2]), length: Number(m[3]) };
      if (m[4] !== undefined) {
        // A record cut short by a crash: the piece is not kept.
        p.trust = parsePieceRecord(m[4]);
        if (!p.trust) continue;
      }
      pieces.set(p.number, p);
    }
    return pieces;
  }
}
