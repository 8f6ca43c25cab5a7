import { createHash } from "node:crypto";

// Rendezvous (highest random weight) hashing: every party that knows the same
// members ranks them alike for a key, and when a member leaves only the keys
// it ranked first move elsewhere. Used for a task's scheduler (the daemon)
// and a task's seed peer (the scheduler).
//
// The weight of a member is sha256(key, separator, member name). Both uses
// keep the exact weights of the releases before them, so that daemons and
// schedulers of mixed versions still agree: the seed choice ranks by the whole
// digest with "\0" between key and name; the scheduler choice by the digest's
// first 32 bits with nothing between (`rankBytes: 4`). Ties keep input order.
export interface RendezvousOptions {
  // Between the key and the member's name in the hashed bytes.
  separator?: string;
  // How many leading bytes of the digest rank members (1..32).
  rankBytes?: number;
}

const DIGEST_BYTES = 32;

export function rendezvousWeight(key: string, name: string, opts: RendezvousOptions = {}): Buffer {
  const h = createHash("sha256").update(key);
  if (opts.separator) h.update(opts.separator);
  const d = h.update(name).digest();
  const n = opts.rankBytes ?? DIGEST_BYTES;
  return n >= DIGEST_BYTES ? d : d.subarray(0, n);
}

// The member with the highest weight for `key` (the first of equals).
export function rendezvousPick<T>(key: string, members: readonly T[], nameOf: (m: T) => string, opts: RendezvousOptions = {}): T | undefined {
  let best: T | undefined;
  let bestWeight: Buffer | undefined;
  for (const m of members) {
    const w = rendezvousWeight(key, nameOf(m), opts);
    if (bestWeight === undefined || Buffer.compare(w, bestWeight) > 0) {
      best = m;
      bestWeight = w;
    }
  }
  return best;
}

// All members, highest weight first (a new array; equals keep input order):
// the first is rendezvousPick's choice, the rest the fallbacks in turn.
export function rendezvousOrder<T>(key: string, members: readonly T[], nameOf: (m: T) => string, opts: RendezvousOptions = {}): T[] {
  const weighed = members.map((m) => ({ m, w: rendezvousWeight(key, nameOf(m), opts) }));
  weighed.sort((a, b) => Buffer.compare(b.w, a.w));
  return weighed.map((x) => x.m);
}
