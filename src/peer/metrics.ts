import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ErrorCode } from "../common/errors.js";

// Where a downloaded byte came from: another peer, the origin, or the local
// store (a request answered by a task that was already complete here).
export type ByteSource = "peer" | "origin" | "local";
// Proxy traffic: blob = a GET through P2P (mirror blob or a URL matching
// --proxy-rules), manifest = a registry manifest, other = anything else
// forwarded, tunnel / intercept = CONNECT spliced / TLS-terminated.
export type ProxyKind = "blob" | "manifest" | "other" | "tunnel" | "intercept";
// p2p = served from the store / swarm, forwarded = streamed from the
// upstream, error = answered with our own error, aborted = the response did
// not complete (client went away, cut off), established = CONNECT tunnel up.
export type ProxyOutcome = "p2p" | "forwarded" | "error" | "aborted" | "established";

// What the upload server already counts for itself (UploadStats).
export interface UploadCounts {
  active: number;
  busy: number;
  pieces: number;
  bytesTotal: number;
  corruptDetected: number;
  refusedConnections: number;
  stalledConnections: number;
}

const PIECE_SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// Label objects built once: the per-piece calls allocate nothing.
const SOURCE = { peer: { source: "peer" }, origin: { source: "origin" }, local: { source: "local" } } as const;

// Every metric of one daemon (or seed peer), in its own registry: `up` runs
// two daemons in one process. Names and meanings: docs/reference/metrics.md
// (generated from these definitions).
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly started: Counter;
  private readonly succeeded: Counter;
  private readonly failed: Counter<"reason">;
  private readonly bytes: Counter<"source">;
  private readonly pieceSeconds: Histogram<"source">;
  private readonly backToSource: Counter;
  private readonly proxyRequests: Counter<"kind" | "outcome">;
  private readonly gcEvictions: Counter<"reason">;
  private readonly gcFreedBytes: Counter;
  private upload: (() => UploadCounts) | undefined;
  private schedulers: (() => { address: string; healthy: boolean }[]) | undefined;

  constructor() {
    const registers = [this.registry];
    this.started = new Counter({
      name: "damselfly_downloads_started_total",
      help: "Task downloads started by this daemon (one per task run, however many clients asked)",
      registers,
    });
    this.succeeded = new Counter({ name: "damselfly_downloads_succeeded_total", help: "Task downloads that completed and verified", registers });
    this.failed = new Counter({
      name: "damselfly_downloads_failed_total",
      help: "Task downloads that failed, by stable error code (DF_ERR_...)",
      labelNames: ["reason"],
      registers,
    });
    this.bytes = new Counter({
      name: "damselfly_download_bytes_total",
      help: "Bytes downloaded, by where they came from: peer, origin, or local (requests answered from a task already complete in the store)",
      labelNames: ["source"],
      registers,
    });
    this.pieceSeconds = new Histogram({
      name: "damselfly_piece_download_duration_seconds",
      help: "Time to fetch one piece, by source (peer or origin)",
      labelNames: ["source"],
      buckets: PIECE_SECONDS,
      registers,
    });
    this.backToSource = new Counter({ name: "damselfly_back_to_source_total", help: "Task downloads that fetched from the origin themselves", registers });
    this.proxyRequests = new Counter({
      name: "damselfly_proxy_requests_total",
      help: "Registry mirror / HTTP proxy requests by kind (blob, manifest, other, tunnel, intercept) and outcome (p2p, forwarded, error, aborted, established)",
      labelNames: ["kind", "outcome"],
      registers,
    });
    this.gcEvictions = new Counter({
      name: "damselfly_gc_evictions_total",
      help: "Tasks removed from the store by garbage collection, by reason",
      labelNames: ["reason"],
      registers,
    });
    this.gcFreedBytes = new Counter({ name: "damselfly_gc_freed_bytes_total", help: "Bytes freed in the store by garbage collection", registers });
    for (const l of Object.values(SOURCE)) this.bytes.inc(l, 0);
    registerUploadMetrics(registers, () => this.upload?.());
    const view = () => this.schedulers?.() ?? [];
    new Gauge({
      name: "damselfly_scheduler_up",
      help: "1 while the scheduler answers (keep-alives, registrations, streams), 0 while this daemon takes it for down or hung",
      labelNames: ["scheduler"],
      registers,
      collect() {
        this.reset();
        for (const s of view()) this.set({ scheduler: s.address }, s.healthy ? 1 : 0);
      },
    });
  }

  // The daemon's health view of its schedulers (scheduler-link.ts).
  bindSchedulers(view: () => { address: string; healthy: boolean }[]): void {
    this.schedulers = view;
  }

  bindUpload(counts: () => UploadCounts): void {
    this.upload = counts;
  }

  downloadStarted(): void {
    this.started.inc();
  }

  downloadSucceeded(): void {
    this.succeeded.inc();
  }

  downloadFailed(code: ErrorCode): void {
    this.failed.inc({ reason: code });
  }

  // One piece stored: its bytes and how long it took.
  piece(source: "peer" | "origin", bytes: number, seconds: number): void {
    const labels = SOURCE[source];
    this.bytes.inc(labels, bytes);
    this.pieceSeconds.observe(labels, seconds);
  }

  localBytes(bytes: number): void {
    if (bytes > 0) this.bytes.inc(SOURCE.local, bytes);
  }

  backToSourceStarted(): void {
    this.backToSource.inc();
  }

  proxyRequest(kind: ProxyKind, outcome: ProxyOutcome): void {
    this.proxyRequests.inc({ kind, outcome });
  }

  // The hook for the store's garbage collector: one call per eviction pass
  // (interval, watermark, make-room, prune...) that removed `tasks` tasks.
  gcEvicted(tasks: number, bytes: number, reason: string): void {
    if (tasks > 0) this.gcEvictions.inc({ reason }, tasks);
    if (bytes > 0) this.gcFreedBytes.inc(bytes);
  }
}

// The upload server keeps its own counters on the data plane; they are read
// when scraped, so serving a piece costs nothing more.
const UPLOAD_COUNTERS: ReadonlyArray<[name: string, help: string, key: Exclude<keyof UploadCounts, "active">]> = [
  ["damselfly_upload_bytes_total", "Piece bytes sent to other peers", "bytesTotal"],
  ["damselfly_upload_pieces_total", "Piece requests served (streaming started)", "pieces"],
  ["damselfly_upload_busy_total", "Piece requests answered 503 busy (every upload slot taken)", "busy"],
  ["damselfly_upload_corrupt_pieces_total", "Stored pieces that failed their CRC-32 check while being uploaded (dropped, fetched again)", "corruptDetected"],
  [
    "damselfly_upload_connections_refused_total",
    "Data-plane connections closed at once: their address had upload.connectionsPerAddress open",
    "refusedConnections",
  ],
  [
    "damselfly_upload_stalled_total",
    "Data-plane connections cut: nothing written for upload.writeStallTimeout (the child stopped reading)",
    "stalledConnections",
  ],
];

function registerUploadMetrics(registers: Registry[], upload: () => UploadCounts | undefined): void {
  for (const [name, help, key] of UPLOAD_COUNTERS) {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(upload()?.[key] ?? 0);
      },
    });
  }
  new Gauge({
    name: "damselfly_uploads_active",
    help: "Piece uploads streaming right now",
    registers,
    collect() {
      this.set(upload()?.active ?? 0);
    },
  });
}
