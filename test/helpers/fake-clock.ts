// A clock for tests that moves only when told to: code given it (e.g. a
// TokenBucket) sees time pass and its timers fire in order, without waiting,
// so a test asserts what happened per unit of *simulated* time and does not
// depend on how busy the machine is.
import type { Clock } from "../../src/common/token-bucket.js";

interface Timer {
  id: number;
  at: number;
  fn: () => void;
}

export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers: Timer[] = [];

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { id: ++this.seq, at: this.t + Math.max(0, ms), fn };
    this.timers.push(timer);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }

  // When the next timer is due (Infinity: none).
  nextTimerAt(): number {
    return this.timers.reduce((min, x) => Math.min(min, x.at), Infinity);
  }

  // Moves the time to `at`, firing every timer due by then in order of due
  // time (then of creation), each at its own due time.
  advanceTo(at: number): void {
    for (;;) {
      const due = this.timers.filter((x) => x.at <= at).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.clearTimeout(due.id);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = Math.max(this.t, at);
  }

  advance(ms: number): void {
    this.advanceTo(this.t + ms);
  }
}
