import { createHash, type Hash } from "node:crypto";
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
    throw new DamselflyError("DF_ERR_INVALID_DIGEST", `invalid digest ${JSON.stringify(s)}: ${algorithm} needs ${HEX_LENGTH[algorithm]} hex digits, got ${hex.length}`);
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
