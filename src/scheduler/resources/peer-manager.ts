import type { BidiSink, schedulerv1 } from "../../protocol/index.js";
import { eventTo, isActiveState, peerTransition, type PeerEvent, type PeerState } from "./peer-state.js";

export type { PeerEvent, PeerState } from "./peer-state.js";

// Keeps views of a task's peers (by state, by candidate count) current.
export interface PeerIndex {
  peerChanged(peer: Peer): void;
}

export interface ParentCost {
  bytes: number;
  micros: number;
}

// What a peer without any reads: its collections are created on first write
// and dropped when emptied: finished peers held as parents are most of the
// scheduler's peers, and empty hash tables were a large part of their heap
// (docs/decisions/scheduler-measurements.md).
const NO_IDS: ReadonlySet<string> = new Set();
const NO_COUNTS: ReadonlyMap<string, number> = new Map();
const NO_COSTS: ReadonlyMap<string, ParentCost> = new Map();
const NO_CANDIDATES: ReadonlyMap<string, string> = new Map();

// One download of one task on one host, as seen by the scheduler.
export class Peer {
  readonly id: string;
  readonly taskId: string;
  readonly hostId: string;
  readonly registeredAt: number;
  private current: PeerState = "pending";
  // The task's indexes while the peer is attached to its task.
  index: PeerIndex | undefined;
  finishedPieces = 0;
  // Open while the peer's AnnouncePeer stream is; undefined for cached peers
  // and for succeeded peers whose stream closed.
  queue: BidiSink<schedulerv1.AnnouncePeerResponse> | undefined;
  private blocked: Set<string> | undefined;
  rescheduleCount = 0;
  private failures: Map<string, number> | undefined;
  private costs: Map<string, ParentCost> | undefined;
  private cands: Map<string, string> | undefined;
  disableBackToSource = false;
  // Set while the peer waits for a parent (time it started waiting).
  waitingSince: number | undefined;
  // The peer told us it is fetching from the origin (back_to_source_started).
  sourceStarted = false;
  // A seed peer taking over a task whose feed died: it takes the pieces the
  // swarm holds before it goes to the origin (seed-trigger.ts).
  takingOver = false;
  // The scheduler sent it to the origin (need_back_to_source): only such a
  // peer's origin failure fails the task for others, and only its geometry
  // overrides what another peer reported.
  granted = false;
  // With TLS: the SHA-256 fingerprint of the certificate on its announce
  // stream (the fetcher a grant names).
  fingerprint: string | undefined;

  constructor(id: string, taskId: string, hostId: string, registeredAt: number) {
    this.id = id;
    this.taskId = taskId;
    this.hostId = hostId;
    this.registeredAt = registeredAt;
  }

  get blocklist(): ReadonlySet<string> {
    return this.blocked ?? NO_IDS;
  }

  block(parentId: string): void {
    (this.blocked ??= new Set()).add(parentId);
  }

  get parentFailures(): ReadonlyMap<string, number> {
    return this.failures ?? NO_COUNTS;
  }

  get parentCost(): ReadonlyMap<string, ParentCost> {
    return this.costs ?? NO_COSTS;
  }

  // Current candidate parents: peer id -> host id. Changed through
  // ResourceStore only (it keeps the hosts' children index with it).
  get candidates(): ReadonlyMap<string, string> {
    return this.cands ?? NO_CANDIDATES;
  }

  setCandidate(parentId: string, hostId: string): void {
    (this.cands ??= new Map()).set(parentId, hostId);
  }

  deleteCandidate(parentId: string): void {
    if (!this.cands?.delete(parentId) || this.cands.size > 0) return;
    this.cands = undefined;
  }

  clearCandidateList(): void {
    this.cands = undefined;
  }

  get state(): PeerState {
    return this.current;
  }

  // Changes the state as the transition table says (resources/peer-state.ts);
  // false when it rejects the event (the state stays). The scheduler goes
  // through SchedulingEngine.transition, which counts and logs rejections.
  apply(event: PeerEvent): boolean {
    const to = peerTransition(this.current, event);
    if (to === null) return false;
    if (to !== this.current) {
      this.current = to;
      this.index?.peerChanged(this);
    }
    return true;
  }

  // For fixtures: the state reached by the event that leads there (ignored
  // when none does).
  set state(s: PeerState) {
    const e = eventTo(this.current, s);
    if (e) this.apply(e);
  }

  get isActive(): boolean {
    return isActiveState(this.current);
  }

  get isWaiting(): boolean {
    return this.waitingSince !== undefined;
  }

  get hasStream(): boolean {
    return this.queue !== undefined && !this.queue.isClosed;
  }

  send(resp: schedulerv1.AnnouncePeerResponse): boolean {
    return this.queue?.push(resp) ?? false;
  }

  recordParentCost(parentId: string, bytes: number, micros: number): void {
    const c = this.costs?.get(parentId);
    if (c) {
      c.bytes += bytes;
      c.micros += micros;
    } else {
      (this.costs ??= new Map()).set(parentId, { bytes, micros });
    }
  }

  // A finished peer asks for no parents again but stays, as a parent, for as
  // long as its host serves the task: what it learnt about its own parents
  // is dead weight then.
  forgetParents(): void {
    this.blocked = undefined;
    this.failures = undefined;
    this.costs = undefined;
  }

  // Counts a non-temporary failure against a parent; returns the new count.
  countParentFailure(parentId: string): number {
    const n = (this.failures?.get(parentId) ?? 0) + 1;
    (this.failures ??= new Map()).set(parentId, n);
    return n;
  }
}

export class PeerManager {
  private readonly peers = new Map<string, Peer>();

  get(id: string): Peer | undefined {
    return this.peers.get(id);
  }

  set(peer: Peer): void {
    this.peers.set(peer.id, peer);
  }

  delete(peer: Peer): boolean {
    // Only the registered instance: a replaced peer must not evict its successor.
    if (this.peers.get(peer.id) !== peer) return false;
    return this.peers.delete(peer.id);
  }

  get size(): number {
    return this.peers.size;
  }

  values(): IterableIterator<Peer> {
    return this.peers.values();
  }
}
