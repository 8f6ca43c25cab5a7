// The dynamic cluster settings: kept per scheduler cluster in the manager,
// edited in its REST API and console, carried to schedulers in
// KeepAliveSchedulerResponse.config and to daemons in
// ListSchedulersResponse.daemon_config, applied there over the component's
// own config without a restart. Declared here once; the manager's validation,
// REST schema and console form, and each component's application are derived
// from this table, and a unit test checks it against manager.proto.
//
// No imports: the console (a separate Vite build) imports this file too.

export interface ClusterConfigKey {
  // REST/JSON name, and the proto field's localName.
  readonly key: string;
  // Who applies it.
  readonly component: "scheduler" | "daemon";
  // The key path in that component's config schema the setting overrides.
  readonly configKey: string;
  readonly min: number;
  readonly max: number;
  // Short label for the console form.
  readonly label: string;
}

// Bytes per second, 0: unlimited (up to 1 PiB/s).
const RATE = { min: 0, max: 2 ** 50 } as const;

export const CLUSTER_CONFIG = [
  { key: "candidateParentLimit", component: "scheduler", configKey: "candidateParentLimit", min: 1, max: 100_000, label: "Candidate parents per decision" },
  { key: "filterParentLimit", component: "scheduler", configKey: "filterParentLimit", min: 1, max: 100_000, label: "Peers sampled when choosing parents" },
  { key: "backToSourceLimit", component: "scheduler", configKey: "backToSourceLimit", min: 0, max: 100_000, label: "Peers of a task at the origin at once" },
  { key: "retryLimit", component: "scheduler", configKey: "retryLimit", min: 1, max: 100_000, label: "Reschedules before back-to-source" },
  {
    key: "totalDownloadRateLimit",
    component: "daemon",
    configKey: "download.totalRateLimit",
    ...RATE,
    label: "Daemon download limit per host (bytes/s, 0: none)",
  },
  { key: "totalUploadRateLimit", component: "daemon", configKey: "upload.totalRateLimit", ...RATE, label: "Daemon upload limit per host (bytes/s, 0: none)" },
  {
    key: "backToSourceRateLimit",
    component: "daemon",
    configKey: "download.backToSourceRateLimit",
    ...RATE,
    label: "Daemon origin limit per host (bytes/s, 0: none)",
  },
  { key: "perTaskRateLimit", component: "daemon", configKey: "download.perTaskRateLimit", ...RATE, label: "Default limit per task (bytes/s, 0: none)" },
] as const satisfies readonly ClusterConfigKey[];

export type ClusterConfigName = (typeof CLUSTER_CONFIG)[number]["key"];
export type SchedulerClusterKey = Extract<(typeof CLUSTER_CONFIG)[number], { component: "scheduler" }>["key"];
export type DaemonClusterKey = Extract<(typeof CLUSTER_CONFIG)[number], { component: "daemon" }>["key"];

// A cluster's stored settings: an absent key leaves each component's own value.
export type ClusterConfig = { [K in ClusterConfigName]?: number };

export const SCHEDULER_CLUSTER_KEYS = CLUSTER_CONFIG.filter((k) => k.component === "scheduler").map((k) => k.key) as SchedulerClusterKey[];
export const DAEMON_CLUSTER_KEYS = CLUSTER_CONFIG.filter((k) => k.component === "daemon").map((k) => k.key) as DaemonClusterKey[];

export const CLUSTER_CONFIG_DESCRIPTION =
  "dynamic settings of the cluster's schedulers and of daemons started with --manager and --cluster-id (rate limits in bytes per second, 0: unlimited); an absent key leaves each component's own value";

// The settings of `cfg` that `keys` name and that are set.
export function pickSet<T, K extends keyof T & ClusterConfigName>(cfg: T, keys: readonly K[]): { [P in K]?: Exclude<T[P], undefined> } {
  const out: { [P in K]?: Exclude<T[P], undefined> } = {};
  for (const k of keys) if (cfg[k] !== undefined) out[k] = cfg[k] as Exclude<T[K], undefined>;
  return out;
}
