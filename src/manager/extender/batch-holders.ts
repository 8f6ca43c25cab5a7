import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { schedulerv1 } from "../../protocol/index.js";
import type { SchedulerAddr } from "../jobs/job-types.js";

// Which hosts hold each of some tasks (layers) in one cluster, for the
// extender's refresh and the manager's image-layers route: ListTaskHolders
// asks about 50 tasks per call (20,000 tracked layers: 400 calls per cluster,
// not 20,000 ListTaskPeers). A cluster whose schedulers predate it
// (Unimplemented) is asked per task with ListTaskPeers (taskHolders).

// The scheduler's own bound (task-jobs.ts MAX_HOLDER_TASKS).
export const HOLDERS_BATCH = 50;

type SchedulerClient = Client<typeof schedulerv1.SchedulerService>;

export interface ClusterHoldersOptions {
  // listTaskHolders absent: ListTaskPeers per task.
  client(s: SchedulerAddr): Pick<SchedulerClient, "listTaskPeers"> & Partial<Pick<SchedulerClient, "listTaskHolders">>;
  headers: Record<string, string>;
  logger: Logger;
  signal: AbortSignal;
  timeoutMs: number;
  // Host name -> node name (pod-nodes.ts); none: host names are node names.
  nodeOf?: ((host: string) => string) | undefined;
}

// task ID -> host names (node names) holding it; a task no scheduler of the
// cluster answered for is absent (holds nowhere, this round).
export async function clusterHolders(
  schedulers: readonly SchedulerAddr[],
  taskIds: readonly string[],
  o: ClusterHoldersOptions,
): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  let batched = true;
  for (let i = 0; i < taskIds.length && !o.signal.aborted; i += HOLDERS_BATCH) {
    const chunk = taskIds.slice(i, i + HOLDERS_BATCH);
    const got = batched ? await askBatch(schedulers, chunk, o) : "unimplemented";
    if (got !== "unimplemented") {
      for (const [t, hosts] of got) out.set(t, hosts);
      continue;
    }
    batched = false;
    for (const t of chunk) {
      if (o.signal.aborted) break;
      out.set(t, await taskHolders(schedulers, t, o));
    }
  }
  return out;
}

// The first scheduler that answers; "unimplemented" when none answered and
// one of them does not know the call.
async function askBatch(schedulers: readonly SchedulerAddr[], taskIds: string[], o: ClusterHoldersOptions): Promise<Map<string, string[]> | "unimplemented"> {
  let unimplemented = false;
  for (const s of schedulers) {
    const c = o.client(s);
    if (!c.listTaskHolders) {
      unimplemented = true;
      continue;
    }
    try {
      const r = await c.listTaskHolders({ taskIds }, { signal: o.signal, timeoutMs: o.timeoutMs, headers: o.headers });
      const names = r.hostnames.map((h) => o.nodeOf?.(h) ?? h);
      const m = new Map<string, string[]>();
      for (const t of r.tasks)
        m.set(
          t.taskId,
          t.hosts.flatMap((i) => (i < names.length ? [names[i]!] : [])),
        );
      return m;
    } catch (err) {
      if (o.signal.aborted) return new Map();
      if (ConnectError.from(err).code === Code.Unimplemented) unimplemented = true;
      o.logger.debug({ tasks: taskIds.length, err: DamselflyError.from(err).message }, "extender: ListTaskHolders failed");
    }
  }
  return unimplemented ? "unimplemented" : new Map();
}

// Hosts that hold the whole task (a peer that succeeded, or has every piece),
// from the first scheduler of the cluster that answers (they share state
// through their sync); none when no scheduler answers.
export async function taskHolders(schedulers: readonly SchedulerAddr[], taskId: string, o: ClusterHoldersOptions): Promise<string[]> {
  for (const s of schedulers) {
    try {
      const r = await o.client(s).listTaskPeers({ taskId }, { signal: o.signal, timeoutMs: o.timeoutMs, headers: o.headers });
      return r.peers
        .filter((p) => p.state === "succeeded" || (p.totalPieces > 0 && p.finishedPieces === p.totalPieces))
        .map((p) => o.nodeOf?.(p.hostname) ?? p.hostname);
    } catch (err) {
      if (o.signal.aborted) return [];
      o.logger.debug({ taskId, err: DamselflyError.from(err).message }, "extender: ListTaskPeers failed");
    }
  }
  return [];
}
