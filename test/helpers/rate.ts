// Checking a rate limit by accounting, not by the clock's verdict on speed:
// a limiter at `rate` bytes per second grants at most rate x time, plus the
// burst its bucket saved up, plus what flows read before they were told to
// stop (the bucket counts after the fact: one read per flow). So moving
// `bytes` takes at least minSeconds(...). A busy machine only makes a
// transfer slower, never faster: this bound holds under any load, and a
// limit that is not applied breaks it by far (loopback moves hundreds of
// MiB/s).
import assert from "node:assert/strict";

export const MiB = 1024 * 1024;

// The bucket's saved-up burst at a rate (src/common/token-bucket.ts).
export function burstOf(rate: number): number {
  return Math.max(16 * 1024, rate * 0.1);
}

// The least time, in seconds, `bytes` can take through a limit of `rate`
// bytes per second; `slack` covers reads counted after the fact.
export function minSeconds(bytes: number, rate: number, slack = MiB): number {
  return Math.max(0, (bytes - burstOf(rate) - slack) / rate);
}

const mib = (n: number) => `${(n / MiB).toFixed(2)} MiB`;

// Fails when `bytes` moved in `ms` is more than a limit of `rate` grants.
export function assertHeldTo(bytes: number, ms: number, rate: number, what: string, slack = MiB): void {
  const min = minSeconds(bytes, rate, slack);
  assert.ok(ms / 1000 >= min, `${what}: ${mib(bytes)} in ${(ms / 1000).toFixed(2)} s, more than ${mib(rate)}/s grants (at least ${min.toFixed(2)} s)`);
}

// Fails unless `bytes` moved in `ms` is more than a limit of `rate` grants:
// proof that a tighter limit no longer applied.
export function assertBeyond(bytes: number, ms: number, rate: number, what: string, slack = MiB): void {
  const min = minSeconds(bytes, rate, slack);
  assert.ok(
    ms / 1000 < min,
    `${what}: ${mib(bytes)} in ${(ms / 1000).toFixed(2)} s, no more than ${mib(rate)}/s would grant (${min.toFixed(2)} s): still held to it`,
  );
}
