import type { Logger } from "../../common/logger.js";
import type { ParentLike, Span } from "../../common/trace.js";
import type { Download } from "../../protocol/index.js";
import type { LocalTask, MakeRoom } from "../storage/local-task.js";
import type { Source } from "../source/source.js";
import type { DaemonMetrics } from "../metrics.js";
import type { TaskLimits } from "../rate-limits.js";
import type { SchedulerLink } from "./scheduler-link.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import type { ParentConnOptions } from "./parent-conn.js";
import { pieceFits } from "./task-geometry.js";
import type { TaskTrust } from "./task-trust.js";

// See piecesAtOnce().
const PIECE_TARGET_MS = 2_000;

export interface PeerTaskOptions {
  task: LocalTask;
  download: Download;
  peerId: string;
  hostId: string;
  scheduler: SchedulerLink | undefined;
  source: Source;
  logger: Logger;
  piecesInFlight: number;
  piecesPerParent: number;
  pieceTimeoutMs: number;
  scheduleTimeoutMs: number;
  metrics?: DaemonMetrics | undefined;
  // The request that started this download (its span is the parent).
  trace?: ParentLike;
  // Rate limits of this download (task and host buckets); none: unlimited.
  limits?: TaskLimits;
  // Asked before the task's data file grows (the disk GC).
  makeRoom?: MakeRoom | undefined;
  // Largest content length a task may have (download.maxContentLength).
  maxContentLength: number;
  // Mutual TLS to parents, and pieces checked against fetcher-signed
  // digests (task-trust.ts).
  tls?: TlsIdentity | undefined;
}

export interface PeerTaskStats {
  bytesFromPeers: number;
  bytesFromSource: number;
  backToSource: boolean;
  schedulerUnavailable: boolean;
  // Piece requests a parent answered "busy".
  busyAnswers: number;
  // Pieces an endgame duplicate delivered first.
  endgameWins: number;
  pieceReads: number;
}

// How many pieces one download has in flight at most. Under a rate limit,
// only as many as arrive within about PIECE_TARGET_MS: the limit is shared by
// every piece in flight, and 16 pieces crawling in together would each take
// minutes at a low limit (no piece to pass on, and a proxied pull would think
// P2P stalled).
export function piecesAtOnce(o: Pick<PeerTaskOptions, "piecesInFlight" | "limits">, pieceLength: number): number {
  const rate = o.limits?.rate ?? 0;
  if (rate <= 0 || pieceLength <= 0) return o.piecesInFlight;
  return Math.max(1, Math.min(o.piecesInFlight, Math.ceil((rate * PIECE_TARGET_MS) / 1000 / pieceLength)));
}

// How a download's parent connections are made and checked.
export function parentConnOptions(o: PeerTaskOptions, stats: PeerTaskStats, trust: TaskTrust | undefined): ParentConnOptions {
  const tls = o.tls;
  return {
    piecesPerParent: o.piecesPerParent,
    pieceTimeoutMs: o.pieceTimeoutMs,
    reads: stats,
    throttle: o.limits?.fromParents,
    childId: o.peerId,
    fits: (n, length) => pieceFits(o.task, o.maxContentLength, n, length),
    // The server must be a peer or seed peer of our CA; options are made
    // per connection, so a rotated certificate is used from then on.
    tls: tls ? () => tls.clientOptions({ roles: ["peer", "seed-peer"] }) : undefined,
    verify: trust ? trust.check.bind(trust) : undefined,
  };
}

// The download's totals on its span (tracing on).
export function recordTotals(span: Span, stats: PeerTaskStats, contentLength: number, parents: number): void {
  span
    .setAttribute("damselfly.content_length", contentLength)
    .setAttribute("damselfly.bytes_from_peers", stats.bytesFromPeers)
    .setAttribute("damselfly.bytes_from_origin", stats.bytesFromSource)
    .setAttribute("damselfly.back_to_source", stats.backToSource)
    .setAttribute("damselfly.scheduler_unavailable", stats.schedulerUnavailable)
    .setAttribute("damselfly.parents", parents)
    .setAttribute("damselfly.busy_answers", stats.busyAnswers);
}
