import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";
import { DamselflyError } from "./errors.js";
import { crc32Update } from "./pieces.js";

export type DigestAlgorithm = "sha256" | "sha512" | "crc32";

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128, crc32: 8 };

export function parseDigest(s: string): Digest {
  const m = /^(sha256|sha512|crc32):([0-9a-fA-F]+)$/.exec(s.trim());
  if (!m) throw new DamselflyError("DF_ERR_INVALID_DIGEST", `invalid digest ${JSON.stringify(s)}: expected sha256:<hex>, sha512:<hex> or crc32:<hex>`);
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

// Incremental hasher over any of the supported algorithms.
export class Digester {
  private hash: Hash | undefined;
  private crc = 0;

  constructor(readonly algorithm: DigestAlgorithm) {
    if (algorithm !== "crc32") this.hash = createHash(algorithm);
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
  const d = new Digester(algorithm);
  const fh = await open(path, "r");
  try {
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
