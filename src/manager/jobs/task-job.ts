import type { Client } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import { downloadTaskId, fromConnectError, type schedulerv1 } from "../../protocol/index.js";
import { fileDownload, type JobArgs, type JobResult, type SchedulerAddr, type TaskFailed, type TaskOk } from "./job-types.js";

export interface TaskJobDeps {
  clusters(): Promise<{ id: number; schedulers: SchedulerAddr[] }[]>;
  client(s: SchedulerAddr): Client<typeof schedulerv1.SchedulerService>;
  signal: AbortSignal;
  timeoutMs: number;
  headers: Record<string, string>;
}

type Outcome = { state: "SUCCESS" | "FAILURE"; result: JobResult; error: string };

// get_task: which hosts of each cluster hold (or are fetching) the task;
// delete_task: remove it from every one of them. The task is named by its ID
// or by the URL (plus tag, application, filtered query parameters) `get`
// would compute it from.
export async function runTaskJob(type: "get_task" | "delete_task", args: JobArgs, deps: TaskJobDeps): Promise<Outcome> {
  const taskId = args.task_id ?? downloadTaskId(fileDownload(args));
  const clusters = await deps.clusters();
  if (clusters.length === 0) {
    const why = "no active scheduler in the job's clusters";
    return { state: "FAILURE", result: { job_states: [{ error: why, results: [] }] }, error: why };
  }
  const results: Record<string, unknown>[] = [];
  let failures = 0;
  for (const c of clusters) {
    let answered = false;
    let last = "no scheduler";
    for (const s of c.schedulers) {
      try {
        const opts = { signal: deps.signal, timeoutMs: Math.min(deps.timeoutMs, 60_000), headers: deps.headers };
        if (type === "get_task") {
          const r = await deps.client(s).listTaskPeers({ taskId }, opts);
          results.push({
            scheduler_cluster_id: c.id,
            task_id: taskId,
            peers: r.peers.map((p) => ({
              id: p.peerId,
              host_id: p.hostId,
              hostname: p.hostname,
              ip: p.ip,
              type: p.seed ? "seed" : "normal",
              state: p.state,
              finished_pieces: p.finishedPieces,
              total_pieces: p.totalPieces,
            })),
          });
        } else {
          const r = await deps.client(s).deleteTask({ taskId }, opts);
          const ok: TaskOk[] = [];
          const failed: TaskFailed[] = [];
          for (const h of r.results) {
            if (h.success) ok.push({ url: args.url ?? "", hostname: h.hostname, ip: h.ip });
            else failed.push({ url: args.url ?? "", hostname: h.hostname, ip: h.ip, description: h.description });
          }
          failures += failed.length;
          results.push({ scheduler_cluster_id: c.id, task_id: taskId, success_tasks: ok, failure_tasks: failed });
        }
        answered = true;
        break;
      } catch (err) {
        const e = fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE");
        last = `${e.code}: ${e.message}`;
        if (deps.signal.aborted || e.code !== "DF_ERR_SCHEDULER_UNAVAILABLE") break;
      }
    }
    if (!answered) {
      failures++;
      results.push({ scheduler_cluster_id: c.id, task_id: taskId, error: last });
    }
  }
  const error = failures > 0 ? `${failures} failure(s)` : "";
  if (deps.signal.aborted) throw new DamselflyError("DF_ERR_CANCELLED", "job cancelled");
  return { state: failures > 0 ? "FAILURE" : "SUCCESS", result: { job_states: [{ error, results }] }, error };
}
