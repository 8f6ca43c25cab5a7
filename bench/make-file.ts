import { createCipheriv, createHash } from "node:crypto";
import { open } from "node:fs/promises";

// Writes `size` pseudo-random bytes (AES-CTR over zeros: fast and not
// compressible) to `path`, returning the sha256 of the content.
export async function makeFile(path: string, size: number, seed = "damselfly"): Promise<string> {
  const key = createHash("sha256").update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const zeros = Buffer.alloc(4 * 1024 * 1024);
  const hash = createHash("sha256");
  const fh = await open(path, "w");
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(zeros.length, size - done);
      const chunk = cipher.update(zeros.subarray(0, n));
      hash.update(chunk);
      await fh.write(chunk, 0, chunk.length);
      done += n;
    }
  } finally {
    await fh.close();
  }
  return hash.digest("hex");
}
