import { DamselflyError } from "../../common/errors.js";

// At most `max` tasks at once and `queueMax` waiting; more is refused at
// once (DF_ERR_SIGNIN_THROTTLED), not queued without bound. Password hashing
// goes through one: a scrypt hash holds 128 MiB while it runs, so parallel
// sign-ins from strangers would otherwise decide the manager's memory (and
// fill libuv's thread pool, which DNS lookups and file I/O share).
export class ConcurrencyLimiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  // The most tasks that ever ran at once (tests, diagnostics).
  peak = 0;

  constructor(
    readonly max: number,
    readonly queueMax: number,
  ) {}

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else if (this.waiting.length < this.queueMax) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else throw new DamselflyError("DF_ERR_SIGNIN_THROTTLED", "too many sign-ins at once");
    this.peak = Math.max(this.peak, this.active);
    try {
      return await task();
    } finally {
      // The slot passes to the next waiter as is: `active` never dips, so a
      // newcomer cannot slip in between.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
