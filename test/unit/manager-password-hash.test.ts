// Password hashes: scrypt at OWASP's N=2^17, r=8, p=1, parameters stored with
// each hash, older hashes verified and flagged for a rehash, absurd stored
// parameters refused without hashing, and at most two hashes (128 MiB each)
// at once, a bounded queue behind them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, scryptSync } from "node:crypto";
import { ConcurrencyLimiter } from "../../src/manager/auth/hash-limiter.js";
import { DUMMY_PASSWORD_HASH, HASHING, hashPassword, SCRYPT, verifyPassword } from "../../src/manager/auth/secrets.js";

function oldHash(password: string, N: number): string {
  const salt = randomBytes(16);
  const key = scryptSync(password, salt, 32, { N, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$8$1$${salt.toString("base64")}$${key.toString("base64")}`;
}

test("hashes name N=2^17, r=8, p=1; older hashes verify and ask for a rehash", async () => {
  assert.deepEqual(SCRYPT, { N: 131072, r: 8, p: 1 });
  const h = await hashPassword("correct horse");
  assert.match(h, /^scrypt\$131072\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);
  assert.deepEqual(await verifyPassword("correct horse", h), { ok: true, rehash: false });
  assert.deepEqual(await verifyPassword("wrong horse", h), { ok: false, rehash: false });
  const old = oldHash("correct horse", 2 ** 14);
  assert.deepEqual(await verifyPassword("correct horse", old), { ok: true, rehash: true });
  assert.deepEqual(await verifyPassword("wrong horse", old), { ok: false, rehash: false }, "no rehash without the password");
  assert.ok(DUMMY_PASSWORD_HASH.startsWith("scrypt$131072$8$1$"), "an unknown user costs the same hash");
  assert.deepEqual(await verifyPassword("x", DUMMY_PASSWORD_HASH), { ok: false, rehash: false });
});

test("stored parameters past the bounds are refused without hashing", async () => {
  const salt = "AAAAAAAAAAAAAAAAAAAAAA==";
  const key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  for (const bad of [`scrypt$${2 ** 30}$8$1$${salt}$${key}`, `scrypt$1000$8$1$${salt}$${key}`, `scrypt$16384$1024$1$${salt}$${key}`, "bcrypt$x", ""]) {
    const before = HASHING.peak;
    assert.deepEqual(await verifyPassword("x", bad), { ok: false, rehash: false }, bad);
    assert.equal(HASHING.peak, before);
  }
});

test("the limiter runs at most `max` at once, queues `queueMax`, refuses the rest at once", async () => {
  const l = new ConcurrencyLimiter(2, 3);
  const gates: (() => void)[] = [];
  const tasks = Array.from({ length: 10 }, () => l.run(() => new Promise<void>((r) => gates.push(r))));
  const settled = await Promise.allSettled(tasks.slice(5));
  assert.ok(settled.every((s) => s.status === "rejected" && /DF_ERR_SIGNIN_THROTTLED|too many sign-ins/.test(String(s.reason?.code ?? s.reason))));
  assert.equal(l.running, 2);
  assert.equal(l.queued, 3);
  assert.equal(gates.length, 2, "only two started");
  for (let i = 0; i < 5; i++) {
    gates[i]!();
    await tasks[i];
    assert.ok(l.running <= 2);
  }
  assert.equal(l.peak, 2);
  assert.equal(l.running, 0);
  assert.equal(l.queued, 0);
});

test("real hashes go through it: twelve sign-ins at once hash two at a time, the overflow is refused", async () => {
  const h = await hashPassword("pw-1234567");
  HASHING.peak = 0;
  const results = await Promise.allSettled(Array.from({ length: 12 }, () => verifyPassword("pw-1234567", h)));
  const ok = results.filter((r) => r.status === "fulfilled");
  const refused = results.filter((r) => r.status === "rejected");
  assert.equal(HASHING.peak, HASHING.max);
  assert.equal(HASHING.max, 2);
  assert.equal(ok.length, HASHING.max + HASHING.queueMax);
  assert.equal(refused.length, 12 - ok.length);
  for (const r of refused) assert.equal((r as PromiseRejectedResult).reason.code, "DF_ERR_SIGNIN_THROTTLED");
});
