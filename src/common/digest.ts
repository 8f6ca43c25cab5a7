import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { DamselflyError } from "./errors.js";
import { crc32Update } from "./pieces.js";

// gitsha1: a git blob id, sha1("blob <length>\0" + content): how the Hugging
// Face Hub names a plain (non-LFS) file's content (its ETag). It keys such a
// file's task, so the daemon checks it like any content address.
export type DigestAlgorithm = "sha256" | "sha512" | "crc32" | "gitsha1";

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128, crc32: 8, gitsha1: 40 };

export function parseDigest(s: string): Digest {
  const m = /^(sha256|sha512|crc32|gitsha1):([0-9a-fA-F]+)$/.exec(s.trim());
  if (!m)
    throw new DamselflyError("DF_ERR_INVALID_DIGEST", `invalid digest ${JSON.stringify(s)}: expected sha256:<hex>, sha512:<hex>, crc32:<hex> or gitsha1:<hex>`);
  const algorithm = m[1] as DigestAlgorithm;
  const hex = m[2]!.toLowerCase();
  if (hex.length !== HEX_LENGTH[algorithm]) {
    throw new DamselflyError(
      "DF_ERR_INVALID_DIGEST",
      `invalid digest ${JSON.stringify(s)}: ${algorithm} needs ${HEX_LENGTH[algorithm]} hex digits, got ${hex.length}`,
    );
  }
  return { algorithm, hex };
}

export function formatDigest(d: Digest): string {
  return `${d.algorithm}:${d.hex}`;
}

// Whether a hasher of this algorithm must know the content's length before
// its first byte (a git blob id hashes it first).
export function needsLength(algorithm: DigestAlgorithm): boolean {
  return algorithm === "gitsha1";
}

// Incremental hasher over any of the supported algorithms; `length` (the
// whole content's) is required for gitsha1.
export class Digester {
  private hash: Hash | undefined;
  private crc = 0;

  constructor(
    readonly algorithm: DigestAlgorithm,
    length?: number,
  ) {
    if (algorithm === "gitsha1") {
      if (length === undefined || length < 0) throw new DamselflyError("DF_ERR_INVALID_DIGEST", "a gitsha1 digest needs the content length");
      this.hash = createHash("sha1").update(`blob ${length}\0`);
    } else if (algorithm !== "crc32") this.hash = createHash(algorithm);
  }

  update(data: Uint8Array): void {
    if (this.hash) this.hash.update(data);
    else this.crc = crc32Update(data, this.crc);
  }

  digest(): Digest {
    const hex = this.hash ? this.hash.digest("hex") : this.crc.toString(16).padStart(8, "0");
    return { algorithm: this.algorithm, hex };
  }
}

export function digestMismatch(expected: Digest, actual: Digest): DamselflyError {
  return new DamselflyError("DF_ERR_DIGEST_MISMATCH", `digest mismatch: expected ${formatDigest(expected)}, got ${formatDigest(actual)}`);
}

const HASH_CHUNK = 4 * 1024 * 1024;

// Digest of a whole file, read in large sequential chunks.
export async function hashFile(path: string, algorithm: DigestAlgorithm): Promise<Digest> {
  const fh = await open(path, "r");
  try {
    const d = new Digester(algorithm, needsLength(algorithm) ? (await fh.stat()).size : undefined);
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, HASH_CHUNK, null);
      if (bytesRead === 0) break;
      d.update(buf.subarray(0, bytesRead));
    }
    return d.digest();
  } finally {
    await fh.close();
  }
}
