import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ResourceStore } from "./resources/resource-store.js";
import type { Decision } from "./scheduling/engine.js";

// From microseconds (a decision computed on the spot) to tens of seconds (a
// peer that waited for a seed peer).
const DECISION_SECONDS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30];
const RESULTS: readonly Decision[] = ["normal_task", "need_back_to_source", "empty_task", "local_hit", "task_failed", "gone"];

// Every metric of one scheduler, in its own registry. Per-decision calls
// reuse label objects made once: the scheduler makes thousands a second.
export class SchedulerMetrics {
  readonly registry = new Registry();
  private readonly registrations: Counter;
  private readonly reschedules: Counter;
  private readonly decisions: Counter<"result">;
  private readonly decisionSeconds: Histogram;
  private readonly backToSource: Counter;
  private readonly finished: Counter<"via">;
  private readonly labels = new Map<Decision, { result: Decision }>();

  constructor(store: ResourceStore) {
    const registers = [this.registry];
    this.registrations = new Counter({
      name: "damselfly_scheduler_registrations_total",
      help: "Peers registered (one per task download announced by a daemon)",
      registers,
    });
    this.reschedules = new Counter({
      name: "damselfly_scheduler_reschedules_total",
      help: "Reschedule requests from peers (parents failed or too slow)",
      registers,
    });
    this.decisions = new Counter({
      name: "damselfly_scheduler_decisions_total",
      help: "Scheduling answers sent to peers after a registration, a reschedule or a wait, by result",
      labelNames: ["result"],
      registers,
    });
    this.decisionSeconds = new Histogram({
      name: "damselfly_scheduler_decision_duration_seconds",
      help: "Time from a peer's registration or reschedule request to the scheduler's answer (waits for a seed peer included)",
      buckets: DECISION_SECONDS,
      registers,
    });
    this.backToSource = new Counter({
      name: "damselfly_scheduler_back_to_source_total",
      help: "Times a peer was told to fetch from the origin (any path: registration, reschedule, lost parents)",
      registers,
    });
    this.finished = new Counter({
      name: "damselfly_scheduler_peers_finished_total",
      help: "Peers that reported their task complete, by how (peer: from parents, back_to_source: from the origin)",
      labelNames: ["via"],
      registers,
    });
    for (const r of RESULTS) {
      const l = { result: r };
      this.labels.set(r, l);
      this.decisions.inc(l, 0);
    }
    new Gauge({
      name: "damselfly_scheduler_peers",
      help: "Peers held (downloading or able to serve)",
      registers,
      collect() {
        this.set(store.peers.size);
      },
    });
    new Gauge({
      name: "damselfly_scheduler_tasks",
      help: "Tasks held",
      registers,
      collect() {
        this.set(store.tasks.size);
      },
    });
    new Gauge({
      name: "damselfly_scheduler_hosts",
      help: "Daemon hosts announced and not timed out",
      registers,
      collect() {
        this.set(store.hosts.size);
      },
    });
  }

  registered(): void {
    this.registrations.inc();
  }

  rescheduled(): void {
    this.reschedules.inc();
  }

  // A final answer (waiting is not one: it is counted when the wait ends).
  decided(decision: Decision, seconds: number): void {
    if (decision === "wait" || decision === "wait_seed") return;
    this.decisions.inc(this.labels.get(decision) ?? { result: decision });
    this.decisionSeconds.observe(seconds);
  }

  sentToSource(): void {
    this.backToSource.inc();
  }

  peerFinished(via: "peer" | "back_to_source"): void {
    this.finished.inc({ via });
  }
}
