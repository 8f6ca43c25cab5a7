import { Digester, formatDigest, parseDigest } from "../../common/digest.js";
import type { Download } from "../../protocol/index.js";
import type { LocalTask } from "../storage/local-task.js";
import { DigestVerifier } from "./digest-verifier.js";

// The whole-content checks of one download, hashed while the pieces arrive
// (DigestVerifier) rather than after the last byte:
// - the task's own: a content-addressed task must be exactly its digest
//   before it is marked done (CRCs only prove the pieces match what the
//   origin or a parent sent);
// - a requester's: a URL task whose requester named a digest. Content that
//   does not match it fails the download like the task's own digest: the
//   task is discarded (never served or announced) and the next request
//   fetches it afresh; a poisoned copy must not outlive the check that
//   caught it.
export class TaskDigests {
  private readonly own: DigestVerifier | undefined;
  private readonly advisory: DigestVerifier | undefined;

  // `resumed`: pieces stored by an earlier run are present (the advisory
  // check needs every byte to pass through this run).
  constructor(
    task: LocalTask,
    private readonly download: Download,
    resumed: boolean,
  ) {
    const d = download;
    if (d.digestTaskId && d.digest && !task.meta.digestVerified) this.own = new DigestVerifier(task, parseDigest(d.digest));
    else if (!d.digestTaskId && d.digest && !resumed) this.advisory = new DigestVerifier(task, parseDigest(d.digest));
  }

  // The task's own digest is being checked.
  get checksTask(): boolean {
    return this.own !== undefined;
  }

  // Bytes as they arrive from a sequential source (the origin).
  feed(offset: number, chunk: Uint8Array): void {
    this.own?.feed(offset, chunk);
    this.advisory?.feed(offset, chunk);
  }

  // Once every piece is stored: rejects when a check fails; resolves with
  // the digest the content matched (the task's own, or the requester's), so
  // `get` need not hash its copy again: without it, every hf:// LFS file was
  // hashed twice, and a model's last file kept `get -r` 9-13 s after the
  // daemon had it (bench/results/2026-12-07-model.md).
  async result(): Promise<string | undefined> {
    if (this.own) {
      await this.own.result;
      return formatDigest(parseDigest(this.download.digest));
    }
    if (!this.advisory || !this.download.digest) return undefined;
    await this.advisory.result;
    return formatDigest(parseDigest(this.download.digest));
  }

  close(): void {
    this.own?.close();
    this.advisory?.close();
  }
}

// The task is keyed by a digest only empty content has: its emptiness needs
// nobody's word (a scheduler's "empty task" is checked, not believed).
export function keyedByEmptyContent(d: Download): boolean {
  if (!d.digestTaskId || !d.digest) return false;
  const want = parseDigest(d.digest);
  return new Digester(want.algorithm, 0).digest().hex === want.hex;
}
