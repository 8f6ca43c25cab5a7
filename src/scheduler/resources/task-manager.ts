import { create } from "@bufbuild/protobuf";
import { schedulerv1, type Download, type ErrorDetail } from "../../protocol/index.js";

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
export class Task {
  readonly id: string;
  readonly createdAt: number;
  updatedAt: number;
  contentLength = 0n;
  pieceLength = 0n;
  totalPieces = 0;
  contentLengthKnown = false;
  readonly peers = new Set<string>();
  readonly backToSourcePeers = new Set<string>();
  readonly waiting = new Set<string>();
  seedTrigger: SeedTriggerState | undefined;
  // The last Download request: needed to trigger a seed. Memory only; its
  // headers may carry credentials and must never be logged.
  download: Download | undefined;
  failure: TaskFailure | undefined;

  constructor(id: string, now: number) {
    this.id = id;
    this.createdAt = now;
    this.updatedAt = now;
  }

  get isEmptyContent(): boolean {
    return this.contentLengthKnown && this.contentLength === 0n;
  }

  // From BackToSourceStarted: the origin's length, when it gave one.
  recordStarted(contentLength: bigint, pieceLength: bigint, known: boolean): void {
    if (this.contentLengthKnown) return;
    if (pieceLength > 0n) this.pieceLength = pieceLength;
    if (!known) return;
    this.contentLength = contentLength;
    this.contentLengthKnown = true;
    this.totalPieces = this.pieceLength > 0n ? Number((contentLength + this.pieceLength - 1n) / this.pieceLength) : 0;
  }

  // From a finished download (or a cached task): everything is known.
  recordFinished(contentLength: bigint, pieceLength: bigint, totalPieces: number): void {
    this.contentLength = contentLength;
    if (pieceLength > 0n) this.pieceLength = pieceLength;
    this.totalPieces = totalPieces > 0 || contentLength === 0n ? totalPieces : this.pieceLength > 0n ? Number((contentLength + this.pieceLength - 1n) / this.pieceLength) : 0;
    this.contentLengthKnown = true;
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

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  getOrCreate(id: string, now: number): Task {
    let t = this.tasks.get(id);
    if (!t) {
      t = new Task(id, now);
      this.tasks.set(id, t);
    }
    return t;
  }

  delete(id: string): boolean {
    return this.tasks.delete(id);
  }

  get size(): number {
    return this.tasks.size;
  }

  values(): IterableIterator<Task> {
    return this.tasks.values();
  }
}
