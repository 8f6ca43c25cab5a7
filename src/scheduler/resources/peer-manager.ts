import type { BidiSink, schedulerv1 } from "../../protocol/index.js";

export type PeerState = "pending" | "running" | "backToSource" | "succeeded" | "failed";

// Keeps views of a task's peers (by state, by candidate count) current.
export interface PeerIndex {
  peerChanged(peer: Peer): void;
}

export interface ParentCost {
  bytes: number;
  micros: number;
}

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
  readonly blocklist = new Set<string>();
  rescheduleCount = 0;
  readonly parentFailures = new Map<string, number>();
  readonly parentCost = new Map<string, ParentCost>();
  // Current candidate parents: peer id -> host id.
  readonly candidates = new Map<string, string>();
  disableBackToSource = false;
  // Set while the peer waits for a parent (time it started waiting).
  waitingSince: number | undefined;
  // The peer told us it is fetching from the origin (back_to_source_started).
  sourceStarted = false;

  constructor(id: string, taskId: string, hostId: string, registeredAt: number) {
    this.id = id;
    this.taskId = taskId;
    this.hostId = hostId;
    this.registeredAt = registeredAt;
  }

  get state(): PeerState {
    return this.current;
  }

  set state(s: PeerState) {
    if (s === this.current) return;
    this.current = s;
    this.index?.peerChanged(this);
  }

  get isActive(): boolean {
    return this.state === "pending" || this.state === "running" || this.state === "backToSource";
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
    const c = this.parentCost.get(parentId);
    if (c) {
      c.bytes += bytes;
      c.micros += micros;
    } else {
      this.parentCost.set(parentId, { bytes, micros });
    }
  }

  // A finished peer asks for no parents again but stays, as a parent, for as
  // long as its host serves the task: what it learnt about its own parents
  // is dead weight then.
  forgetParents(): void {
    this.blocklist.clear();
    this.parentFailures.clear();
    this.parentCost.clear();
  }

  // Counts a non-temporary failure against a parent; returns the new count.
  countParentFailure(parentId: string): number {
    const n = (this.parentFailures.get(parentId) ?? 0) + 1;
    this.parentFailures.set(parentId, n);
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
