import { Counter, Histogram, Registry } from "prom-client";

const REQUEST_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// Every metric of the manager, in its own registry. Route labels are route
// templates ("/api/v1/jobs/:id"), RPC method paths or "unmatched": never raw
// URLs, so a scanner cannot blow up the number of series.
export class ManagerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"route" | "method" | "status">;
  private readonly requestSeconds: Histogram<"route">;
  private readonly jobs: Counter<"type" | "state">;

  constructor() {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "damselfly_manager_http_requests_total",
      help: "HTTP requests answered (REST, open API, console, component RPC) by route template, method and status",
      labelNames: ["route", "method", "status"],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: "damselfly_manager_http_request_duration_seconds",
      help: "Time to answer an HTTP request, by route template",
      labelNames: ["route"],
      buckets: REQUEST_SECONDS,
      registers,
    });
    this.jobs = new Counter({
      name: "damselfly_manager_jobs_total",
      help: "Jobs by type (preheat, get_task, delete_task) and the state they reached (PENDING when created, SUCCESS, FAILURE)",
      labelNames: ["type", "state"],
      registers,
    });
  }

  request(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.requestSeconds.observe({ route }, seconds);
  }

  job(type: string, state: string): void {
    this.jobs.inc({ type, state });
  }
}
