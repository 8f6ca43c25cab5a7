// The manager's sign-in throttle on a fake clock: per account and per
// address, exponential lock past the free failures, attempts in flight count,
// a success clears only its own account, and the maps stay bounded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { addressKey, SigninThrottle, type Admission, type ThrottleOptions } from "../../src/manager/auth/signin-throttle.js";

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const rule = { free: 3, baseLockMs: 1_000, maxLockMs: 8_000, forgetMs: 60_000 };

function throttle(c: ReturnType<typeof clock>, over: Partial<ThrottleOptions> = {}): SigninThrottle {
  return new SigninThrottle({ account: rule, address: { ...rule, free: 10 }, maxEntries: 100, now: c.now, ...over });
}

function attempt(a: Admission) {
  if (!("attempt" in a)) assert.fail(`refused: retry after ${a.retryAfterMs} ms (${a.reason})`);
  return a.attempt;
}

const refused = (a: Admission) => ("retryAfterMs" in a ? a : assert.fail("admitted"));

test("an account gets `free` failures, then a lock that doubles up to the cap", () => {
  const c = clock();
  const t = throttle(c);
  for (let i = 0; i < 2; i++) assert.equal(attempt(t.admit("root", "10.0.0.1")).failed(), false);
  assert.equal(attempt(t.admit("root", "10.0.0.1")).failed(), true, "the third failure locks");
  const locks: number[] = [];
  for (let i = 0; i < 6; i++) {
    const r = refused(t.admit("root", "10.0.0.2"));
    assert.equal(r.reason, "account", "another address does not help");
    locks.push(r.retryAfterMs);
    c.advance(r.retryAfterMs);
    attempt(t.admit("root", "10.0.0.2")).failed();
  }
  assert.deepEqual(locks, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  // Locked, even the right password is not checked.
  assert.equal(refused(t.admit("root", "10.0.0.3")).retryAfterMs, 8_000);
});

test("an address gets its own allowance across account names", () => {
  const c = clock();
  const t = throttle(c);
  for (let i = 0; i < 10; i++) attempt(t.admit(`user-${i}`, "10.0.0.9")).failed();
  const r = refused(t.admit("someone-new", "10.0.0.9"));
  assert.equal(r.reason, "address");
  assert.equal(r.retryAfterMs, 1_000);
  attempt(t.admit("someone-new", "10.0.0.10")).abandoned();
});

test("a success clears its own account only: not the address, not another account", () => {
  const c = clock();
  const t = throttle(c);
  for (let i = 0; i < 2; i++) attempt(t.admit("gina", "10.0.0.1")).failed();
  for (let i = 0; i < 8; i++) attempt(t.admit(`x${i}`, "10.0.0.1")).failed();
  // 10 failures from the address: its allowance is spent and it is locked.
  // Signing in to one's own account elsewhere resets that account only.
  attempt(t.admit("mallory", "10.0.0.2")).succeeded();
  assert.equal(refused(t.admit("mallory", "10.0.0.1")).reason, "address", "the address stays locked");
  c.advance(1_000);
  attempt(t.admit("mallory", "10.0.0.1")).succeeded();
  // ... nor from the locked address itself: its next failure locks it again.
  assert.equal(attempt(t.admit("x9", "10.0.0.1")).failed(), true, "the address count was not reset");
  assert.equal(refused(t.admit("x10", "10.0.0.1")).retryAfterMs, 2_000);
  // gina's count survived: her third failure locks her.
  assert.equal(attempt(t.admit("gina", "10.0.0.7")).failed(), true);
  assert.equal(refused(t.admit("gina", "10.0.0.8")).reason, "account");
  // The owner's success after the lock clears the account.
  c.advance(1_000);
  attempt(t.admit("gina", "10.0.0.8")).succeeded();
  for (let i = 0; i < 2; i++) assert.equal(attempt(t.admit("gina", "10.0.0.8")).failed(), false);
});

test("attempts in flight count: parallel guesses cannot overshoot the allowance", () => {
  const c = clock();
  const t = throttle(c);
  const inFlight = [0, 1, 2].map(() => attempt(t.admit("root", "10.0.0.1")));
  const busy = refused(t.admit("root", "10.0.0.1"));
  assert.equal(busy.reason, "account");
  for (const a of inFlight) a.failed();
  assert.ok("retryAfterMs" in t.admit("root", "10.0.0.1"), "locked once the three failed");
  // An attempt that ended in an error counts as nothing.
  const c2 = clock();
  const t2 = throttle(c2);
  for (let i = 0; i < 5; i++) attempt(t2.admit("root", "10.0.0.1")).abandoned();
  attempt(t2.admit("root", "10.0.0.1")).failed();
});

test("a key quiet for forgetMs starts over", () => {
  const c = clock();
  const t = throttle(c);
  for (let i = 0; i < 2; i++) attempt(t.admit("root", "10.0.0.1")).failed();
  c.advance(60_000);
  for (let i = 0; i < 2; i++) assert.equal(attempt(t.admit("root", "10.0.0.1")).failed(), false);
});

test("memory is bounded: past maxEntries the stalest keys go", () => {
  const c = clock();
  const t = throttle(c, { maxEntries: 1_000 });
  for (let i = 0; i < 50_000; i++) {
    attempt(t.admit(`name-${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)).failed();
  }
  assert.deepEqual(t.size, { accounts: 1_000, addresses: 1_000 });
});

test("addresses: IPv4 (mapped or not) as is, IPv6 by /64", () => {
  assert.equal(addressKey("10.1.2.3"), "10.1.2.3");
  assert.equal(addressKey("::ffff:10.1.2.3"), "10.1.2.3");
  assert.equal(addressKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"), "2001:db8:1:2::/64");
  assert.equal(addressKey("2001:db8::1"), "2001:db8:0:0::/64");
});
