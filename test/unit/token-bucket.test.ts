// The data plane's rate limiter on its own, on a fake clock: rates over
// simulated seconds, bursts, live rate changes, and background flows
// yielding to real-time ones. Time is simulated, so every figure is exact
// and no assertion depends on the machine's load.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Throttle, TokenBucket } from "../../src/common/token-bucket.js";
import { RateLimits } from "../../src/peer/rate-limits.js";
import { FakeClock } from "../helpers/fake-clock.js";

const MiB = 1024 * 1024;
const READ = 64 * 1024;
// A simulated socket delivers one READ per READ_MS while its flow is not
// paused: 1.25 GiB/s, far above every rate tested.
const READ_MS = 0.05;

interface Flow {
  throttle: Throttle;
  moved: number;
  // [simulated ms, bytes] of each read.
  events: Array<[number, number]>;
  nextReadAt: number;
  paused: boolean;
}

// Greedy flows through their throttles for `ms` of simulated time, as
// sockets would: each reads READ bytes per READ_MS, counts them (take) and,
// when told to stop, waits until the throttle resumes it.
function run(clock: FakeClock, throttles: Throttle[], ms: number): Flow[] {
  const until = clock.now() + ms;
  const flows: Flow[] = throttles.map((throttle) => ({ throttle, moved: 0, events: [], nextReadAt: clock.now(), paused: false }));
  for (;;) {
    const ready = flows.filter((f) => !f.paused);
    const nextRead = Math.min(...ready.map((f) => f.nextReadAt));
    const next = Math.min(nextRead, clock.nextTimerAt());
    if (next >= until) break;
    if (next < nextRead) {
      clock.advanceTo(next); // a bucket's timer: may resume paused flows
      continue;
    }
    clock.advanceTo(next);
    const f = ready.find((x) => x.nextReadAt === next)!;
    f.moved += READ;
    f.events.push([clock.now(), READ]);
    f.nextReadAt = clock.now() + READ_MS;
    if (!f.throttle.take(READ)) {
      f.paused = true;
      f.throttle.wait(() => {
        f.paused = false;
        f.nextReadAt = clock.now();
      });
    }
  }
  clock.advanceTo(until);
  return flows;
}

const mib = (n: number) => `${(n / MiB).toFixed(2)} MiB`;

test("a greedy flow gets the rate plus the saved-up burst, no more", () => {
  const clock = new FakeClock();
  const rate = 32 * MiB;
  const b = new TokenBucket(rate, clock);
  const [f] = run(clock, [new Throttle([b])], 1_000);
  // The first tenth of a second comes from the saved-up burst.
  const expected = rate + rate * 0.1;
  assert.ok(f!.moved <= expected + READ, `moved ${mib(f!.moved)} in 1 s at 32 MiB/s (expected ${mib(expected)})`);
  assert.ok(f!.moved >= expected * 0.98, `moved only ${mib(f!.moved)} in 1 s at 32 MiB/s (expected ${mib(expected)})`);
});

test("no window sees more than rate x time + burst + one read", () => {
  const clock = new FakeClock();
  const rate = 16 * MiB;
  const b = new TokenBucket(rate, clock);
  clock.advance(300); // idle: the bucket fills up to its burst, no further
  const [f] = run(clock, [new Throttle([b])], 800);
  const events = f!.events;
  const burst = rate * 0.1;
  let worst = -Infinity;
  for (let i = 0; i < events.length; i++) {
    let sum = 0;
    for (let j = i; j < events.length; j++) {
      sum += events[j]![1];
      const allowed = (rate * (events[j]![0] - events[i]![0])) / 1000 + burst + READ;
      worst = Math.max(worst, sum - allowed);
    }
  }
  assert.ok(worst <= 0, `a window went ${(worst / 1024).toFixed(0)} KiB over rate x time + burst + one read`);
  // And the limit binds: the whole run is within one read of it.
  assert.ok(f!.moved >= rate * 0.8 + burst - READ, `moved only ${mib(f!.moved)} in 0.8 s`);
});

test("setRate takes effect while a flow runs; 0 releases waiters at once", () => {
  const clock = new FakeClock();
  const b = new TokenBucket(8 * MiB, clock);
  const t = new Throttle([b]);
  const [slow] = run(clock, [t], 500);
  b.setRate(32 * MiB);
  const [fast] = run(clock, [t], 500);
  // The first half second includes the 0.8 MiB burst; a rate change keeps
  // the tokens (capped at the new burst) but saves up none.
  assert.ok(slow!.moved <= 4 * MiB + 0.8 * MiB + READ, `before: ${mib(slow!.moved)} in 0.5 s at 8 MiB/s`);
  assert.ok(slow!.moved >= 4 * MiB, `before: ${mib(slow!.moved)} in 0.5 s at 8 MiB/s`);
  assert.ok(fast!.moved <= 16 * MiB + 3.2 * MiB + READ, `after setRate(32 MiB/s): ${mib(fast!.moved)} in 0.5 s`);
  assert.ok(fast!.moved >= 16 * MiB * 0.98, `after setRate(32 MiB/s): ${mib(fast!.moved)} in 0.5 s`);

  b.setRate(1024); // 1 KiB/s: a 1 MiB debt takes ~17 minutes to pay
  b.take(MiB);
  let released = false;
  t.wait(() => (released = true));
  assert.equal(released, false);
  clock.advance(60_000);
  assert.equal(released, false, "a minute pays back 60 KiB of the 1 MiB debt");
  b.setRate(0);
  assert.equal(released, true, "lifting the limit releases the waiting flow");
  assert.equal(b.take(100 * MiB), true, "unlimited: every take succeeds");
});

test("background flows get only what real-time flows leave", () => {
  const clock = new FakeClock();
  const host = new TokenBucket(32 * MiB, clock);
  const [realtime, background] = run(clock, [new Throttle([host]), new Throttle([host], true)], 1_000);
  const total = realtime!.moved + background!.moved;
  assert.ok(
    realtime!.moved / total > 0.85,
    `real-time got ${((100 * realtime!.moved) / total).toFixed(0)}% (${mib(realtime!.moved)}), background ${mib(background!.moved)}`,
  );
  assert.ok(total <= 32 * MiB * 1.1 + 2 * READ, `together ${mib(total)} in 1 s under a 32 MiB/s cap`);

  // A real-time flow held to 8 MiB/s by its own task bucket leaves the rest
  // of the host's 32 MiB/s to background work.
  const task = new TokenBucket(8 * MiB, clock);
  const [capped, rest] = run(clock, [new Throttle([task, host]), new Throttle([host], true)], 1_000);
  assert.ok(capped!.moved >= 8 * MiB * 0.98 && capped!.moved <= 8 * MiB * 1.1 + READ, `capped real-time flow: ${mib(capped!.moved)} in 1 s`);
  assert.ok(rest!.moved > 32 * MiB * 0.5, `background got ${mib(rest!.moved)} of the ~24 MiB left`);
  assert.ok(capped!.moved + rest!.moved <= 32 * MiB * 1.1 + 2 * READ, `together ${mib(capped!.moved + rest!.moved)} in 1 s`);
});

test("with the real clock, a flow in debt is resumed by the bucket's timer", async () => {
  const b = new TokenBucket(64 * MiB);
  const t = new Throttle([b]);
  assert.equal(t.take(8 * MiB), false, "8 MiB at once puts a 6.4 MiB burst in debt");
  await t.waitAsync();
  assert.equal(b.ready(), true);
  const aborted = new AbortController();
  t.take(64 * MiB);
  const waiting = t.waitAsync(aborted.signal);
  aborted.abort(new Error("cancelled"));
  await assert.rejects(waiting, /cancelled/);
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

test("a task's path through the host's buckets: every byte counts against each, on the host's clock", () => {
  const clock = new FakeClock();
  const limits = new RateLimits({ totalDownloadRateLimit: 16 * MiB, totalUploadRateLimit: 0, backToSourceRateLimit: 4 * MiB, perTaskRateLimit: 0 }, clock);
  const task = limits.forTask({});
  const [peers] = run(clock, [task.fromParents], 1_000);
  assert.ok(peers!.moved <= 16 * MiB * 1.1 + READ && peers!.moved >= 16 * MiB * 0.98, `from parents under a 16 MiB/s host limit: ${mib(peers!.moved)} in 1 s`);
  clock.advance(1_000);
  const [origin] = run(clock, [task.fromSource], 1_000);
  assert.ok(
    origin!.moved <= 4 * MiB * 1.1 + READ && origin!.moved >= 4 * MiB * 0.98,
    `from the origin under a 4 MiB/s back-to-source limit: ${mib(origin!.moved)} in 1 s`,
  );
  assert.equal(limits.download.bytes, peers!.moved + origin!.moved);
  assert.equal(limits.backToSource.bytes, origin!.moved);
  task.close();
});
