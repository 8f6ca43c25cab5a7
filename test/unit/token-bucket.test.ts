// The data plane's rate limiter on its own: measured rates over about a
// second, bursts, live rate changes, and background flows yielding to
// real-time ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Throttle, TokenBucket } from "../../src/common/token-bucket.js";
import { RateLimits } from "../../src/peer/rate-limits.js";

const MiB = 1024 * 1024;
const READ = 64 * 1024;

const tick = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// A greedy flow: moves READ bytes per turn of the event loop (as a socket
// would), pausing whenever the throttle says so. Returns bytes moved.
async function flow(t: Throttle, ms: number, onBytes?: (at: number, n: number) => void): Promise<number> {
  const until = performance.now() + ms;
  let moved = 0;
  while (performance.now() < until) {
    const ok = t.take(READ);
    moved += READ;
    onBytes?.(performance.now(), READ);
    if (!ok) await t.waitAsync();
    else await tick();
  }
  return moved;
}

test("a greedy flow gets the rate, within 10% over a second", async () => {
  const rate = 32 * MiB;
  const b = new TokenBucket(rate);
  const ms = 1_000;
  const moved = await flow(new Throttle([b]), ms);
  // The first tenth of a second comes from the saved-up burst.
  const expected = rate * (ms / 1000) + rate * 0.1;
  assert.ok(Math.abs(moved - expected) / expected < 0.1, `moved ${(moved / MiB).toFixed(2)} MiB in ${ms} ms at ${rate / MiB} MiB/s (expected ~${(expected / MiB).toFixed(2)})`);
});

test("no window sees more than rate x time + burst + one read", async () => {
  const rate = 16 * MiB;
  const b = new TokenBucket(rate);
  await sleep(300); // idle: the bucket fills up to its burst, no further
  const events: Array<[number, number]> = [];
  await flow(new Throttle([b]), 800, (at, n) => events.push([at, n]));
  const burst = rate * 0.1;
  let worst = 0;
  for (let i = 0; i < events.length; i++) {
    let sum = 0;
    for (let j = i; j < events.length; j++) {
      sum += events[j]![1];
      const allowed = (rate * (events[j]![0] - events[i]![0])) / 1000 + burst + READ;
      worst = Math.max(worst, sum - allowed);
    }
  }
  assert.ok(worst <= 0, `a window went ${(worst / 1024).toFixed(0)} KiB over rate x time + burst + one read`);
});

test("setRate takes effect while a flow runs; 0 releases waiters at once", async () => {
  const b = new TokenBucket(8 * MiB);
  const t = new Throttle([b]);
  const slow = await flow(t, 500);
  b.setRate(32 * MiB);
  const fast = await flow(t, 500);
  const slowRate = slow / 0.5;
  const fastRate = fast / 0.5;
  assert.ok(slowRate < 8 * MiB * 1.3, `before: ${(slowRate / MiB).toFixed(1)} MiB/s`);
  assert.ok(fastRate > 32 * MiB * 0.85 && fastRate < 32 * MiB * 1.2, `after setRate(32 MiB/s): ${(fastRate / MiB).toFixed(1)} MiB/s`);

  b.setRate(1024); // 1 KiB/s: a 1 MiB debt takes ~17 minutes to pay
  b.take(MiB);
  let released = false;
  t.wait(() => (released = true));
  assert.equal(released, false);
  b.setRate(0);
  assert.equal(released, true, "lifting the limit releases the waiting flow");
  assert.equal(b.take(100 * MiB), true, "unlimited: every take succeeds");
});

test("background flows get only what real-time flows leave", async () => {
  const host = new TokenBucket(32 * MiB);
  const rt = await Promise.all([flow(new Throttle([host]), 1_000), flow(new Throttle([host], true), 1_000)]);
  const [realtime, background] = rt;
  const total = realtime + background;
  assert.ok(realtime / total > 0.85, `real-time got ${((100 * realtime) / total).toFixed(0)}% (${(realtime / MiB).toFixed(1)} MiB), background ${(background / MiB).toFixed(1)} MiB`);
  assert.ok(total < 32 * MiB * 1.25, `together ${(total / MiB).toFixed(1)} MiB in 1 s under a 32 MiB/s cap`);

  // A real-time flow held to 8 MiB/s by its own task bucket leaves the rest
  // of the host's 32 MiB/s to background work.
  const task = new TokenBucket(8 * MiB);
  const [capped, rest] = await Promise.all([flow(new Throttle([task, host]), 1_000), flow(new Throttle([host], true), 1_000)]);
  assert.ok(capped > 8 * MiB * 0.8 && capped < 8 * MiB * 1.3, `capped real-time flow: ${(capped / MiB).toFixed(1)} MiB/s`);
  assert.ok(rest > 32 * MiB * 0.5, `background got ${(rest / MiB).toFixed(1)} MiB/s of the ~24 MiB/s left`);
  assert.ok(capped + rest < 32 * MiB * 1.25, `together ${((capped + rest) / MiB).toFixed(1)} MiB/s`);
});

test("task limits: a request's own limit, the default, joins and live host changes", () => {
  const limits = new RateLimits({ totalDownloadRateLimit: 0, totalUploadRateLimit: 0, backToSourceRateLimit: 0, perTaskRateLimit: 4 * MiB });
  const a = limits.forTask({ rateLimit: 16 * MiB, background: true });
  assert.equal(a.bucket.limit, 16 * MiB, "the request's own limit replaces the default");
  assert.equal(a.background, true);
  a.join({});
  assert.equal(a.bucket.limit, 16 * MiB, "the most generous request wins");
  assert.equal(a.background, false, "a real-time request makes the task real-time");

  const b = limits.forTask({});
  assert.equal(b.bucket.limit, 4 * MiB, "no limit asked: the default");
  limits.set({ totalDownloadRateLimit: 100 * MiB, totalUploadRateLimit: 50 * MiB, backToSourceRateLimit: 10 * MiB, perTaskRateLimit: 0 });
  assert.equal(b.bucket.limit, 0, "a running task follows a changed default");
  assert.equal(limits.download.limit, 100 * MiB);
  assert.equal(limits.upload.limit, 50 * MiB);
  assert.equal(limits.backToSource.limit, 10 * MiB);
  b.close();
  limits.set({ totalDownloadRateLimit: 0, totalUploadRateLimit: 0, backToSourceRateLimit: 0, perTaskRateLimit: 2 * MiB });
  assert.equal(b.bucket.limit, 0, "a finished task is not updated");
  assert.equal(a.bucket.limit, 16 * MiB);
  assert.throws(() => new TokenBucket(-1), RangeError);
});
