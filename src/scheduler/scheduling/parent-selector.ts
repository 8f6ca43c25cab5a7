import type { Host } from "../resources/host-manager.js";
import type { Peer } from "../resources/peer-manager.js";

// Parent selection: pure functions over the scheduler's state, so they can be
// tested without a server.

export interface SelectionInput {
  child: Peer;
  // Peers of the child's task (the child itself may be among them).
  peers: Iterable<Peer>;
  host: (id: string) => Host | undefined;
  // Total pieces of the task, 0 while unknown.
  totalPieces: number;
  filterParentLimit: number;
  candidateParentLimit: number;
  random?: () => number;
}

export const SCORE_WEIGHTS = {
  load: 0.4,
  progress: 0.35,
  seed: 0.1,
  throughput: 0.15,
  failurePenalty: 0.25,
} as const;

// Bytes/µs at which a parent's throughput score reaches 0.5 (≈ 50 MB/s).
const THROUGHPUT_HALF = 50;

// Can `parent` serve `child` at all? The reasons a peer is never a candidate.
export function isEligibleParent(child: Peer, parent: Peer, host: Host | undefined): boolean {
  if (parent.id === child.id) return false;
  if (parent.taskId !== child.taskId) return false;
  if (parent.hostId === child.hostId) return false;
  if (child.blocklist.has(parent.id)) return false;
  if (!host) return false;
  switch (parent.state) {
    case "failed":
      return false;
    case "pending":
      // Nothing to serve yet.
      if (parent.finishedPieces === 0) return false;
      break;
    case "backToSource":
      // Fetching from the origin: a parent as soon as it actually started.
      if (!parent.sourceStarted && parent.finishedPieces === 0) return false;
      break;
    case "running":
    case "succeeded":
      break;
  }
  return host.hasFreeSlot(child.id);
}

export function progressOf(parent: Peer, totalPieces: number): number {
  if (parent.state === "succeeded") return 1;
  if (totalPieces <= 0) return parent.finishedPieces > 0 ? 0.5 : 0;
  return Math.min(1, parent.finishedPieces / totalPieces);
}

export function scoreParent(child: Peer, parent: Peer, host: Host, totalPieces: number): number {
  const load = host.freeSlotRatio(child.id);
  const progress = progressOf(parent, totalPieces);
  const seed = host.isSeed ? 1 : 0;
  // Measured throughput from this child, else the host's average; neutral when unknown.
  const cost = child.parentCost.get(parent.id);
  const bpu = cost && cost.micros > 0 ? cost.bytes / cost.micros : host.throughput;
  const throughput = bpu > 0 ? bpu / (bpu + THROUGHPUT_HALF) : 0.5;
  const failures = child.parentFailures.get(parent.id) ?? 0;
  return (
    SCORE_WEIGHTS.load * load +
    SCORE_WEIGHTS.progress * progress +
    SCORE_WEIGHTS.seed * seed +
    SCORE_WEIGHTS.throughput * throughput -
    SCORE_WEIGHTS.failurePenalty * failures
  );
}

// Random sample of at most `n` items (partial Fisher-Yates; order is random).
export function sample<T>(items: T[], n: number, random: () => number = Math.random): T[] {
  if (items.length <= n) return items;
  const a = items.slice();
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (a.length - i));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a.slice(0, n);
}

// Candidate parents for `child`, best first, at most candidateParentLimit.
// Eligibility is checked over all peers of the task (cheap), then at most
// filterParentLimit eligible peers are sampled and scored.
export function selectParents(input: SelectionInput): Peer[] {
  const { child, totalPieces } = input;
  const eligible: Peer[] = [];
  for (const p of input.peers) {
    if (isEligibleParent(child, p, input.host(p.hostId))) eligible.push(p);
  }
  const sampled = sample(eligible, input.filterParentLimit, input.random);
  const scored = sampled.map((p) => ({ p, s: scoreParent(child, p, input.host(p.hostId)!, totalPieces) }));
  scored.sort((a, b) => b.s - a.s);
  return scored.slice(0, input.candidateParentLimit).map((x) => x.p);
}
