import type { Host } from "../resources/host-manager.js";
import type { Peer } from "../resources/peer-manager.js";

// Parent selection: pure functions over the scheduler's state, so they can be
// tested without a server.

export interface SelectionInput {
  child: Peer;
  // Peers of the child's task (the child itself may be among them).
  peers: ArrayLike<Peer>;
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

// Scratch for selectParents' partial shuffle, reused across calls (the
// scheduler selects on one thread, thousands of times a second): position j
// holds slot[j] when stamp[j] is the current generation, else j itself. A Map
// per call (with a sort and an object per sampled peer) was a large share of
// the scheduler's allocations under load (docs/decisions/scheduler-measurements.md).
let slot = new Int32Array(256);
let stamp = new Uint32Array(256);
let generation = 0;
const bestScores: number[] = [];

function nextGeneration(n: number): number {
  if (slot.length < n) {
    const size = 2 ** Math.ceil(Math.log2(n));
    slot = new Int32Array(size);
    stamp = new Uint32Array(size);
    generation = 0;
  }
  generation = (generation + 1) >>> 0;
  if (generation === 0) {
    stamp.fill(0);
    generation = 1;
  }
  return generation;
}

// Candidate parents for `child`, best first, at most candidateParentLimit.
// At most filterParentLimit eligible peers are sampled (uniformly) and scored.
// Peers are drawn in random order and checked as drawn, so a task of
// thousands of peers costs about filterParentLimit checks, not thousands:
// the eligible peers found first in a random order are a uniform sample of
// all eligible ones, as if all had been checked and then sampled. Equal
// scores keep the order they were drawn in.
export function selectParents(input: SelectionInput): Peer[] {
  const { child, totalPieces, peers, filterParentLimit, candidateParentLimit } = input;
  const random = input.random ?? Math.random;
  const n = peers.length;
  const gen = nextGeneration(n);
  const best: Peer[] = [];
  const scores = bestScores;
  scores.length = 0;
  let sampled = 0;
  for (let i = 0; i < n && sampled < filterParentLimit; i++) {
    // Partial Fisher-Yates over positions without copying the list.
    const j = i + Math.floor(random() * (n - i));
    const at = stamp[j] === gen ? slot[j]! : j;
    slot[j] = stamp[i] === gen ? slot[i]! : i;
    stamp[j] = gen;
    const p = peers[at]!;
    const host = input.host(p.hostId);
    if (!isEligibleParent(child, p, host)) continue;
    sampled++;
    const s = scoreParent(child, p, host!, totalPieces);
    // Insertion into the best few, in place (splice allocates).
    let k = best.length;
    if (k === candidateParentLimit) {
      if (!(s > scores[k - 1]!)) continue;
      k--;
    }
    while (k > 0 && scores[k - 1]! < s) {
      best[k] = best[k - 1]!;
      scores[k] = scores[k - 1]!;
      k--;
    }
    best[k] = p;
    scores[k] = s;
  }
  return best;
}
