// Byte-rate limiting for the data plane. A TokenBucket refills continuously
// (computed from the monotonic clock on each use, no refill timer), and a
// flow spends tokens for bytes that already moved: the bucket may go into
// debt, and the flow then stops reading (or writing) until the debt is paid.
// Counting after the fact means the hot path never waits when tokens are
// there (one clock read and some arithmetic per read), and pausing reads is
// backpressure: nothing is buffered, the sender's TCP window closes.

// Tokens saved up while idle: a tenth of a second at the rate (at least one
// read's worth), so a flow that starts after a pause bursts at most that far
// above the rate.
const BURST_SECONDS = 0.1;
const MIN_BURST = 16 * 1024;
// After a real-time flow found the bucket short, background flows keep off
// it for this long: a real-time flow woken by the bucket needs a moment to
// read again, and background flows must not take the tokens meanwhile.
const REALTIME_GRACE_MS = 50;

type Waiter = () => void;

// Where a bucket reads the time and sets its one timer: the real monotonic
// clock and timers by default; tests pass a fake one to drive a bucket
// through seconds of traffic without waiting (test/unit/token-bucket.test.ts).
export interface Clock {
  // Milliseconds, monotonic.
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

// A rate in bytes per second (0: unlimited) with two classes of flows:
// real-time flows are woken first, background flows only get what real-time
// flows leave (see take()). One timer per bucket, set only while a flow waits.
export class TokenBucket {
  private rate = 0;
  private burst = 0;
  private tokens = 0;
  // clock.now() of the last refill.
  private last = 0;
  private realtimeBlockedAt = -Infinity;
  private readonly realtime: Waiter[] = [];
  private readonly background: Waiter[] = [];
  private timer: unknown;
  // Bytes counted through this bucket (limited or not).
  bytes = 0;

  constructor(
    rate = 0,
    private readonly clock: Clock = realClock,
  ) {
    this.setRate(rate);
  }

  // Bytes per second; 0 means unlimited.
  get limit(): number {
    return this.rate;
  }

  get waiting(): number {
    return this.realtime.length + this.background.length;
  }

  // Takes effect at once: flows waiting on the bucket are rescheduled (or
  // released, when the limit is lifted).
  setRate(rate: number): void {
    if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`rate must be a finite number >= 0, got ${rate}`);
    const now = this.clock.now();
    if (this.rate > 0) this.refill(now);
    const wasUnlimited = this.rate === 0;
    this.rate = rate;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (rate === 0) {
      this.tokens = 0;
      this.wake(this.realtime);
      this.wake(this.background);
      return;
    }
    this.burst = Math.max(MIN_BURST, rate * BURST_SECONDS);
    if (wasUnlimited) {
      this.tokens = this.burst;
      this.last = now;
    } else if (this.tokens > this.burst) this.tokens = this.burst;
    this.schedule(now);
  }

  // Counts n bytes that moved. True: go on. False: the flow should stop
  // moving bytes and call wait(). Real-time flows go on while the bucket is
  // not in debt; background flows also stop while a real-time flow is held
  // back by this bucket (or was, within REALTIME_GRACE_MS), so they only use
  // bandwidth real-time flows leave.
  take(n: number, background = false): boolean {
    this.bytes += n;
    if (this.rate === 0) return true;
    const now = this.clock.now();
    this.refill(now);
    this.tokens -= n;
    if (background) return this.tokens >= 0 && this.realtimeFree(now);
    if (this.tokens >= 0) return true;
    this.realtimeBlockedAt = now;
    return false;
  }

  // Whether a flow of this class may move bytes now.
  ready(background = false): boolean {
    if (this.rate === 0) return true;
    const now = this.clock.now();
    this.refill(now);
    return this.tokens >= 0 && (!background || this.realtimeFree(now));
  }

  // Calls resume once the flow may go on (at once if it may already).
  wait(resume: Waiter, background = false): void {
    if (this.ready(background)) return resume();
    (background ? this.background : this.realtime).push(resume);
    if (!background) this.realtimeBlockedAt = this.clock.now();
    this.schedule(this.clock.now());
  }

  private realtimeFree(now: number): boolean {
    return this.realtime.length === 0 && now - this.realtimeBlockedAt >= REALTIME_GRACE_MS;
  }

  private refill(now: number): void {
    const dt = now - this.last;
    this.last = now;
    if (dt > 0) {
      this.tokens += (dt * this.rate) / 1000;
      if (this.tokens > this.burst) this.tokens = this.burst;
    }
  }

  private schedule(now: number): void {
    if (this.timer !== undefined || this.rate === 0 || (this.realtime.length === 0 && this.background.length === 0)) return;
    let ms = this.tokens < 0 ? (-this.tokens / this.rate) * 1000 : 0;
    if (this.realtime.length === 0) ms = Math.max(ms, this.realtimeBlockedAt + REALTIME_GRACE_MS - now);
    this.timer = this.clock.setTimeout(this.onTimer, Math.max(1, Math.ceil(ms)));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    const now = this.clock.now();
    this.refill(now);
    if (this.tokens >= 0) {
      if (this.realtime.length > 0) {
        // They will read again within moments: keep background flows off
        // the tokens until they had the chance.
        this.realtimeBlockedAt = now;
        this.wake(this.realtime);
      } else if (this.realtimeFree(now)) this.wake(this.background);
    }
    this.schedule(this.clock.now());
  };

  private wake(list: Waiter[]): void {
    // A woken flow may queue itself again: wake only those waiting now.
    for (const w of list.splice(0)) w();
  }
}

// One flow's path through several buckets (a task's, then the host's): every
// byte counts against each, and the flow goes on only when all allow it.
export class Throttle {
  constructor(
    private readonly buckets: readonly TokenBucket[],
    // Background flows yield to real-time ones (see TokenBucket.take).
    public background = false,
  ) {}

  take(n: number): boolean {
    let ok = true;
    for (const b of this.buckets) if (!b.take(n, this.background)) ok = false;
    return ok;
  }

  wait(resume: () => void): void {
    for (const b of this.buckets) {
      if (!b.ready(this.background)) {
        b.wait(() => this.wait(resume), this.background);
        return;
      }
    }
    resume();
  }

  // Rejects with the signal's reason when it aborts first (a cancelled
  // download does not sit out a long debt).
  waitAsync(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = (): void => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.wait(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }
}
