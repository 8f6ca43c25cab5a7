import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { ConcurrencyLimiter } from "./hash-limiter.js";

// Passwords are slow-hashed (scrypt, a random salt each); tokens are 32
// random bytes, so a fast SHA-256 is enough and lookups stay an index probe.
// Neither can be recovered from the database.

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

// OWASP's minimum for scrypt: N=2^17, r=8, p=1. One hash takes ~245 ms on
// the 2-core test machine (N=2^14 took ~29 ms) and 128 MiB (128 * N * r)
// while it runs. A hash names its parameters ("scrypt$N$r$p$salt$key"), so
// stronger ones can come later: older hashes still verify and are replaced
// at the next successful sign-in.
export const SCRYPT: Readonly<ScryptParams> = { N: 2 ** 17, r: 8, p: 1 };
const KEY_LEN = 32;
// A stored hash is checked with the parameters it names; these bound them,
// so a bad row cannot make one check take gigabytes.
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;

// Two hashes at once (256 MiB), eight more waiting; beyond that a sign-in
// is refused with 429 at once.
export const HASHING = new ConcurrencyLimiter(2, 8);

function scryptAsync(password: string, salt: Buffer, { N, r, p }: ScryptParams, keyLen: number): Promise<Buffer> {
  // scrypt needs 128 * N * r bytes (plus 128 * r * p); twice that is room.
  const maxmem = 2 * 128 * r * (N + p);
  return HASHING.run(
    () => new Promise((resolve, reject) => scrypt(password, salt, keyLen, { N, r, p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)))),
  );
}

export async function hashPassword(password: string, params: ScryptParams = SCRYPT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, params, KEY_LEN);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

function parseHash(stored: string): { params: ScryptParams; salt: Buffer; key: Buffer } | undefined {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return undefined;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const valid = (x: number, max: number) => Number.isSafeInteger(x) && x >= 1 && x <= max;
  // N must be a power of two above 1.
  if (!valid(N, MAX_N) || N < 2 || (N & (N - 1)) !== 0 || !valid(r, MAX_R) || !valid(p, MAX_P)) return undefined;
  const key = Buffer.from(parts[5]!, "base64");
  if (key.length < 16 || key.length > 64) return undefined;
  return { params: { N, r, p }, salt: Buffer.from(parts[4]!, "base64"), key };
}

export interface Verified {
  ok: boolean;
  // The password was right but its hash has older parameters: hash it again.
  rehash: boolean;
}

export async function verifyPassword(password: string, stored: string): Promise<Verified> {
  const h = parseHash(stored);
  if (!h) return { ok: false, rehash: false };
  const key = await scryptAsync(password, h.salt, h.params, h.key.length);
  const ok = timingSafeEqual(key, h.key);
  const current = h.params.N === SCRYPT.N && h.params.r === SCRYPT.r && h.params.p === SCRYPT.p;
  return { ok, rehash: ok && !current };
}

// Checked against a dummy hash when the user does not exist, so a wrong
// name and a wrong password take the same time (same parameters as SCRYPT).
export const DUMMY_PASSWORD_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=`;

export const SESSION_PREFIX = "dfs_";
export const PAT_PREFIX = "dfp_";

export function newToken(prefix: string): string {
  return prefix + randomBytes(32).toString("base64url");
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export function newPassword(): string {
  return randomBytes(15).toString("base64url");
}
