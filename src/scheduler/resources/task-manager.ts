import type { SpanContext } from "../../common/trace.js";
import { create } from "@bufbuild/protobuf";
import { schedulerv1, type Download, type ErrorDetail } from "../../protocol/index.js";
import type { Peer, PeerIndex } from "./peer-manager.js";
import { PeerPool } from "./peer-pool.js";
import { recordGeometry, type GeometrySource, type TaskGeometry } from "./task-geometry.js";

export interface SeedTriggerState {
  hostId: string;
  at: number;
  failed: boolean;
}

export interface TaskFailure {
  detail: ErrorDetail;
  at: number;
}

// One piece of content (one task ID) and the peers that download or hold it.
// Besides all its peers, the task keeps views of them that decisions ask
// about, updated as peers change state or candidates: a decision must not
// walk every peer of a task thousands of peers big.
export class Task implements PeerIndex, TaskGeometry {
  readonly id: string;
  readonly createdAt: number;
  updatedAt: number;
  contentLength = 0n;
  pieceLength = 0n;
  totalPieces = 0;
  contentLengthKnown = false;
  geometryBy: GeometrySource | undefined;
  // The registrant whose peer brought the task in (access.ts counts them).
  creator: string | undefined;
  readonly peers = new PeerPool();
  readonly succeeded = new PeerPool();
  // Peers on hosts that announced themselves as seeds (checked again on use:
  // a host may re-announce as a normal one).
  readonly seedPeers = new Set<Peer>();
  // Running peers holding fewer candidates than candidateLimit: the ones a
  // re-evaluation offers new parents to.
  readonly shortOfParents = new Set<Peer>();
  readonly backToSourcePeers = new Set<string>();
  readonly waiting = new Set<string>();
  seedTrigger: SeedTriggerState | undefined;
  // The task's first peer here already held pieces: the swarm exists and this
  // scheduler is meeting it again (it restarted, or took the task over from
  // another), so its other peers are coming back too.
  rejoinedAt: number | undefined;
  // The last Download request: needed to trigger a seed. Memory only; its
  // headers may carry credentials and must never be logged.
  download: Download | undefined;
  // The trace of the first traced registration: a seed trigger joins it.
  trace: SpanContext | undefined;
  failure: TaskFailure | undefined;
  // An imported task (no origin): the digest its ID is made of, checked
  // (protocol/cache-task.ts). Nobody is ever sent to an origin for it.
  cacheDigest: string | undefined;

  constructor(
    id: string,
    now: number,
    private readonly candidateLimit = Number.POSITIVE_INFINITY,
  ) {
    this.id = id;
    this.createdAt = now;
    this.updatedAt = now;
  }

  attach(peer: Peer, onSeedHost: boolean): void {
    this.peers.add(peer);
    if (onSeedHost) this.seedPeers.add(peer);
    peer.index = this;
    this.peerChanged(peer);
  }

  detach(peer: Peer): void {
    if (peer.index === this) peer.index = undefined;
    this.peers.delete(peer);
    this.succeeded.delete(peer);
    this.seedPeers.delete(peer);
    this.shortOfParents.delete(peer);
    this.backToSourcePeers.delete(peer.id);
    this.waiting.delete(peer.id);
  }

  // The peer's state or candidates changed.
  peerChanged(peer: Peer): void {
    if (peer.state === "succeeded") this.succeeded.add(peer);
    else this.succeeded.delete(peer);
    if (peer.state === "running" && peer.candidates.size < this.candidateLimit) this.shortOfParents.add(peer);
    else this.shortOfParents.delete(peer);
  }

  get isEmptyContent(): boolean {
    return this.contentLengthKnown && this.contentLength === 0n;
  }

  // From BackToSourceStarted: the origin's length, when it gave one.
  // Throws DF_ERR_GEOMETRY_INVALID when it contradicts what is recorded
  // (task-geometry.ts); `granted`: the reporter is the peer sent to the origin.
  recordStarted(contentLength: bigint, pieceLength: bigint, known: boolean, granted = false): void {
    recordGeometry(this, { contentLength, pieceLength, known }, granted);
  }

  // From a finished download (or a cached task): everything is known.
  recordFinished(contentLength: bigint, pieceLength: bigint, totalPieces: number, granted = false): void {
    recordGeometry(this, { contentLength, pieceLength, totalPieces, known: true }, granted);
  }

  recentFailure(now: number, windowMs: number): ErrorDetail | undefined {
    return this.failure && now - this.failure.at < windowMs ? this.failure.detail : undefined;
  }

  toInfo(): schedulerv1.TaskInfo {
    return create(schedulerv1.TaskInfoSchema, {
      contentLength: this.contentLength,
      pieceLength: this.pieceLength,
      totalPieces: this.totalPieces,
      contentLengthKnown: this.contentLengthKnown,
    });
  }
}

export class TaskManager {
  private readonly tasks = new Map<string, Task>();
  private readonly deleteHooks: Array<(task: Task) => void> = [];

  // candidateLimit: the scheduler's candidateParentLimit (see Task.shortOfParents).
  // Changes (dynamic cluster config) apply to tasks created afterwards.
  constructor(public candidateLimit = Number.POSITIVE_INFINITY) {}

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  getOrCreate(id: string, now: number): Task {
    let t = this.tasks.get(id);
    if (!t) {
      t = new Task(id, now, this.candidateLimit);
      this.tasks.set(id, t);
    }
    return t;
  }

  delete(id: string): boolean {
    const task = this.tasks.get(id);
    if (!task) return false;
    this.tasks.delete(id);
    for (const hook of this.deleteHooks) hook(task);
    return true;
  }

  // Told of every task dropped (what is counted per task goes with it).
  onDelete(hook: (task: Task) => void): void {
    this.deleteHooks.push(hook);
  }

  get size(): number {
    return this.tasks.size;
  }

  values(): IterableIterator<Task> {
    return this.tasks.values();
  }
}
