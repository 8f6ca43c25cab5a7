import { create } from "@bufbuild/protobuf";
import { DownloadSchema, type Download } from "../../protocol/index.js";

// Job arguments and results, in the shapes Harbor and Dragonfly clients use.

export type JobType = "preheat" | "get_task" | "delete_task";

export interface JobArgs {
  // preheat only.
  type?: "image" | "file";
  url?: string;
  // get_task / delete_task: the task, or the URL (with tag, application and
  // filtered_query_params) it is computed from.
  task_id?: string;
  tag?: string;
  application?: string;
  filtered_query_params?: string;
  headers?: Record<string, string>;
  scope?: "single_seed_peer" | "all_seed_peers" | "all_peers";
  platform?: string;
  concurrent_count?: number;
  // preheat of an s3:// prefix or an hf:// repository or folder: every file
  // under it (at most MAX_RECURSIVE_FILES) matching include and not exclude.
  recursive?: boolean;
  include?: string[];
  exclude?: string[];
  // hf://: branch, tag or commit (default main).
  hf_revision?: string;
  // hf://: a token for a private or gated repository. In memory for the
  // job's life only: stored as REDACTED, never logged.
  hf_token?: string;
  // Nanoseconds, as Harbor sends it; 0 means the manager's default.
  timeout?: number;
}

export interface TaskOk {
  url: string;
  hostname: string;
  ip: string;
}
export interface TaskFailed extends TaskOk {
  description: string;
}
export interface ClusterResult {
  scheduler_cluster_id: number;
  success_tasks: TaskOk[];
  failure_tasks: TaskFailed[];
}
export interface JobResult {
  job_states: { error: string; results: (ClusterResult | Record<string, unknown>)[] }[];
}

export type SchedulerAddr = { ip: string; port: number };

// What a job's stored args show in place of a secret.
export const REDACTED = "[redacted]";

// The longest a job may run: the API refuses more (args.timeout, in
// nanoseconds), and the runner clamps whatever it finds (rows written before
// the API checked, a large preheatTimeout) so no timer overflows: Node fires
// a timer of more than 2^31-1 ms at once, and AbortSignal.timeout throws.
export const MAX_JOB_TIMEOUT_MS = 24 * 3_600_000;
export const MAX_JOB_TIMEOUT_NS = MAX_JOB_TIMEOUT_MS * 1e6;

// The job's timeout in ms: args.timeout (ns; 0 or absent: the default).
export function jobTimeoutMs(args: Pick<JobArgs, "timeout">, defaultMs: number): number {
  const ns = args.timeout;
  const ms = typeof ns === "number" && Number.isFinite(ns) && ns > 0 ? Math.ceil(ns / 1e6) : defaultMs;
  return Math.min(Math.max(1, ms), MAX_JOB_TIMEOUT_MS);
}

// A file download as `get` describes it: same task ID.
export function fileDownload(args: JobArgs, headers: Record<string, string> = {}): Download {
  const filtered = (args.filtered_query_params ?? "")
    .split("&")
    .flatMap((s) => s.split(","))
    .map((s) => s.trim())
    .filter(Boolean);
  return create(DownloadSchema, { url: args.url ?? "", headers, tag: args.tag ?? "", application: args.application ?? "", filteredQueryParams: filtered });
}
