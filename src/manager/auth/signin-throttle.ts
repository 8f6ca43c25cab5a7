import { isIP } from "node:net";
import { normalizeIp } from "../../common/address.js";

// Sign-in guessing is throttled twice: per account (someone guessing root's
// password from many addresses) and per remote address (someone trying many
// accounts from one). Each key gets `free` failures; every failure after
// that locks the key for base * 2^(failures - free), up to maxLock. A key
// quiet for `forget` after its last failure starts over. Attempts still
// being checked count as failures until they end, so parallel guesses cannot
// overshoot the allowance; past it, one attempt per key at a time.
//
// A success clears its own account's count only: it gives the address back
// the one attempt it used and clears nothing else, so signing in to one's own
// account between guesses does not reset the address or another account.
// With the defaults a guesser gets ~5 tries per account in the first
// minute and then about one per 15 minutes.

export interface ThrottleRule {
  free: number;
  baseLockMs: number;
  maxLockMs: number;
  forgetMs: number;
}

export interface ThrottleOptions {
  account: ThrottleRule;
  address: ThrottleRule;
  // Per map: past it the least recently touched key is forgotten, so a flood
  // of names or addresses costs bounded memory.
  maxEntries: number;
  now?: () => number;
}

export const DEFAULT_THROTTLE: ThrottleOptions = {
  account: { free: 5, baseLockMs: 1_000, maxLockMs: 15 * 60_000, forgetMs: 60 * 60_000 },
  // Looser: many people may sign in from behind one NAT.
  address: { free: 20, baseLockMs: 1_000, maxLockMs: 15 * 60_000, forgetMs: 60 * 60_000 },
  maxEntries: 10_000,
};

// How long a caller waits when an attempt for its key is still running.
const BUSY_RETRY_MS = 1_000;

interface Entry {
  failures: number;
  pending: number;
  lockedUntil: number;
  lastFailureAt: number;
}

class Backoff {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly rule: ThrottleRule,
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  // Milliseconds until `key` may try again (0: now).
  wait(key: string): number {
    const e = this.live(key);
    if (!e) return 0;
    const t = this.now();
    if (e.lockedUntil > t) return e.lockedUntil - t;
    if (e.pending > 0 && e.failures + e.pending >= this.rule.free) return BUSY_RETRY_MS;
    return 0;
  }

  begin(key: string): void {
    const e = this.live(key) ?? { failures: 0, pending: 0, lockedUntil: 0, lastFailureAt: 0 };
    e.pending++;
    this.touch(key, e);
  }

  // Whether this failure locked the key.
  end(key: string, failed: boolean): boolean {
    const e = this.entries.get(key);
    if (!e) return false;
    e.pending = Math.max(0, e.pending - 1);
    if (!failed) return false;
    const t = this.now();
    e.failures++;
    e.lastFailureAt = t;
    const over = e.failures - this.rule.free;
    if (over >= 0) e.lockedUntil = t + Math.min(this.rule.baseLockMs * 2 ** Math.min(over, 30), this.rule.maxLockMs);
    this.touch(key, e);
    return over >= 0;
  }

  reset(key: string): void {
    this.entries.delete(key);
  }

  private live(key: string): Entry | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const t = this.now();
    if (e.pending === 0 && e.lockedUntil <= t && t - e.lastFailureAt >= this.rule.forgetMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  // Map order is touch order: the first key is the stalest.
  private touch(key: string, e: Entry): void {
    this.entries.delete(key);
    this.entries.set(key, e);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }
}

export interface Attempt {
  // Whether the failure locked the account or the address.
  failed(): boolean;
  succeeded(): void;
  // Ended without an answer (an error): counts as nothing.
  abandoned(): void;
}

export type Admission = { attempt: Attempt } | { retryAfterMs: number; reason: "account" | "address" };

export class SigninThrottle {
  private readonly accounts: Backoff;
  private readonly addresses: Backoff;

  constructor(opts: ThrottleOptions = DEFAULT_THROTTLE) {
    const now = opts.now ?? Date.now;
    this.accounts = new Backoff(opts.account, opts.maxEntries, now);
    this.addresses = new Backoff(opts.address, opts.maxEntries, now);
  }

  // Keys held (tests: memory stays bounded).
  get size(): { accounts: number; addresses: number } {
    return { accounts: this.accounts.size, addresses: this.addresses.size };
  }

  admit(name: string, remote: string): Admission {
    const address = addressKey(remote);
    const byAccount = this.accounts.wait(name);
    const byAddress = this.addresses.wait(address);
    if (byAccount > 0 || byAddress > 0) {
      return { retryAfterMs: Math.max(byAccount, byAddress), reason: byAccount >= byAddress ? "account" : "address" };
    }
    this.accounts.begin(name);
    this.addresses.begin(address);
    let ended = false;
    const end = (): boolean => {
      const first = !ended;
      ended = true;
      return first;
    };
    return {
      attempt: {
        failed: () => {
          if (!end()) return false;
          const account = this.accounts.end(name, true);
          const addr = this.addresses.end(address, true);
          return account || addr;
        },
        succeeded: () => {
          if (!end()) return;
          this.accounts.reset(name);
          this.addresses.end(address, false);
        },
        abandoned: () => {
          if (!end()) return;
          this.accounts.end(name, false);
          this.addresses.end(address, false);
        },
      },
    };
  }
}

// One key per IPv4 address and per IPv6 /64 (what one host usually holds).
export function addressKey(remote: string): string {
  const ip = normalizeIp(remote);
  if (isIP(ip) !== 6) return ip;
  const groups = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const full = expandV6(groups);
  return `${full.slice(0, 4).join(":")}::/64`;
}

function expandV6(ip: string): string[] {
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t];
}
