import type { Logger } from "../common/logger.js";
import type { Decision } from "./scheduling/engine.js";
import type { SchedulerMetrics } from "./metrics.js";

// Per-peer events (registered, rescheduled, finished) are counted here and
// logged at info as one cumulative "peer summary" line per interval and at
// shutdown; the per-peer lines are debug. At thousands of downloads a second
// one info line per event costs the scheduler a measurable share of its CPU
// (serialising and writing the line), which is not worth what it tells an
// operator (docs/decisions/scheduler-measurements.md).
export class PeerCounters {
  private readonly registered: Record<string, number> = {};
  private readonly rescheduled: Record<string, number> = {};
  private readonly finished: Record<string, number> = {};
  private changed = false;

  // The same events also feed the Prometheus metrics, when given.
  constructor(private readonly metrics?: SchedulerMetrics) {}

  // seconds: how long the decision took to make.
  registeredWith(decision: Decision, seconds = 0): void {
    this.registered[decision] = (this.registered[decision] ?? 0) + 1;
    this.changed = true;
    this.metrics?.registered();
    this.metrics?.decided(decision, seconds);
  }

  rescheduledWith(decision: Decision, seconds = 0): void {
    this.rescheduled[decision] = (this.rescheduled[decision] ?? 0) + 1;
    this.changed = true;
    this.metrics?.rescheduled();
    this.metrics?.decided(decision, seconds);
  }

  // via: the message that said so (peerFinished or backToSourceFinished).
  finishedVia(via: string): void {
    this.finished[via] = (this.finished[via] ?? 0) + 1;
    this.changed = true;
    this.metrics?.peerFinished(via === "peerFinished" ? "peer" : "back_to_source");
  }

  // Totals since the start; nothing when nothing happened since the last line
  // (unless `always`, for the line at shutdown).
  log(log: Logger, always = false): void {
    if (!this.changed && !always) return;
    this.changed = false;
    log.info({ registered: { ...this.registered }, rescheduled: { ...this.rescheduled }, finished: { ...this.finished } }, "peer summary");
  }
}
