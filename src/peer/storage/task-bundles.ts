import { readFile, rename, writeFile } from "node:fs/promises";
import { decodeBundle, type TrustBundle } from "../../protocol/trust.js";
import type { PieceInfo } from "./piece-log.js";
import { STORE_FILE_MODE } from "./modes.js";

// A task's trust bundles (protocol/trust.ts: a scheduler's grant, the
// fetcher's certificate and its signed geometry), one per fetcher whose
// piece digests the task holds, kept in `bundles.json` next to the data:
// with the digests in pieces.log they let any holder, after a restart and
// long after the fetcher left, hand pieces on with records a child checks.
// Bundles are only ever added; a piece's record names its fetcher by
// certificate fingerprint.
export class TaskBundles {
  private readonly list: TrustBundle[] = [];
  private readonly fetchers = new Set<string>();
  private chain: Promise<void> = Promise.resolve();

  // `added`: told of each new bundle (sync streams pass it on at once);
  // `removed`: the task's files are being deleted (nothing is written).
  constructor(
    private readonly file: string,
    private readonly added: (b: TrustBundle) => void,
    private readonly removed: () => boolean,
  ) {}

  get all(): readonly TrustBundle[] {
    return this.list;
  }

  get size(): number {
    return this.list.length;
  }

  has(fetcher: string): boolean {
    return this.fetchers.has(fetcher);
  }

  // With TLS a piece is handed on only with a signed digest whose fetcher's
  // bundle the task holds (the child checks both).
  covers(p: PieceInfo): boolean {
    return p.trust !== undefined && this.fetchers.has(p.trust.fetcher);
  }

  // Every piece is covered. An empty task has no piece to sign and needs a
  // bundle (its geometry) all the same.
  coverAll(pieces: Iterable<PieceInfo>): boolean {
    if (this.list.length === 0) return false;
    for (const p of pieces) if (!this.covers(p)) return false;
    return true;
  }

  // Keeps a bundle (the first of each fetcher) and writes the file; resolves
  // once it is on disk, so pieces logged after it can name its fetcher.
  add(b: TrustBundle): Promise<void> {
    if (this.fetchers.has(b.grant.fetcher)) return this.chain;
    this.remember(b);
    this.added(b);
    const next = this.chain.then(async () => {
      if (this.removed()) return;
      const tmp = `${this.file}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(this.list), { mode: STORE_FILE_MODE });
      await rename(tmp, this.file);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  private remember(b: TrustBundle): void {
    this.list.push(b);
    this.fetchers.add(b.grant.fetcher);
  }

  // Reads the file left by an earlier run; a missing or unreadable file is
  // no bundle (the pieces that need one are then not served).
  async load(): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(this.file, "utf8"));
    } catch {
      return;
    }
    if (!Array.isArray(raw)) return;
    for (const item of raw) {
      try {
        const b = decodeBundle(JSON.stringify(item));
        if (!this.fetchers.has(b.grant.fetcher)) this.remember(b);
      } catch {
        // Not a bundle: skipped.
      }
    }
  }
}
