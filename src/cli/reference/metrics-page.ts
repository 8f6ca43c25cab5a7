// docs/reference/metrics.md: every metric each component registers, read from
// the registries themselves (constructed here, never served).
import type { Registry } from "prom-client";
import { ManagerMetrics } from "../../manager/metrics.js";
import { DaemonMetrics } from "../../peer/metrics.js";
import type { ResourceStore } from "../../scheduler/resources/resource-store.js";
import { SchedulerMetrics } from "../../scheduler/metrics.js";
import { code, generatedHeader, table } from "./markdown.js";

interface Described {
  name: string;
  help: string;
  labelNames?: readonly string[];
  get(): Promise<{ type: string }> | { type: string };
}

// The scheduler's gauges read the store's sizes when scraped: empty maps do.
const emptyStore = { peers: new Map(), tasks: new Map(), hosts: new Map() } as unknown as ResourceStore;

async function rows(registry: Registry): Promise<string[][]> {
  const out: string[][] = [];
  for (const m of registry.getMetricsAsArray() as unknown as Described[]) {
    const { type } = await m.get();
    out.push([code(m.name), type, (m.labelNames ?? []).map(code).join(", "), m.help]);
  }
  return out.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

export async function metricsPage(): Promise<string> {
  const components: [string, string, Registry][] = [
    ["Daemon and seed peer", "src/peer/metrics.ts", new DaemonMetrics().registry],
    ["Scheduler", "src/scheduler/metrics.ts", new SchedulerMetrics(emptyStore).registry],
    ["Manager", "src/manager/metrics.ts", new ManagerMetrics().registry],
  ];
  const parts = [
    generatedHeader(
      "Metrics",
      components.map(([, file]) => file),
    ),
    "Served on `GET /metrics` of the `--metrics-listen` address (off by default). Each component has its own",
    "registry; where the server runs, Node's process metrics are added with the `damselfly_` prefix",
    "(`damselfly_process_cpu_seconds_total`, `damselfly_process_resident_memory_bytes`,",
    "`damselfly_nodejs_eventloop_lag_seconds`, ...). Example queries: [operations/metrics.md](../operations/metrics.md).",
    "",
  ];
  for (const [title, file, registry] of components) {
    parts.push(`## ${title}`, "", `From \`${file}\`.`, "", table(["metric", "type", "labels", "help"], await rows(registry)), "");
  }
  return parts.join("\n");
}
