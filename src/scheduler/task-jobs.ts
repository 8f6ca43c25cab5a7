import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { SchedulerConfig } from "../common/schemas.js";
import { clusterTokenHeaders, fromConnectError, schedulerv1 } from "../protocol/index.js";
import type { DaemonClients } from "./daemon-clients.js";
import type { Host } from "./resources/host-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { PeerEvents } from "./scheduling/peer-events.js";
import { checkTaskId } from "./validate.js";
import { registryOf } from "../common/task-id.js";

export interface TaskJobsDeps {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  events: PeerEvents;
  clients: DaemonClients;
  now: () => number;
  clusterToken?: string | undefined;
}

const MAX_REGISTRIES = 256;
export const MAX_HOLDER_TASKS = 50;

// "https://u@host:5000/v2/..." -> "https://host:5000" as task IDs name a
// registry (common/task-id.ts: docker.io aliases folded, no userinfo);
// undefined unless http(s) with a host. `memo` spares a URL parse per task.
export function urlOrigin(url: string, memo?: Map<string, string | undefined>): string | undefined {
  const m = /^https?:\/\/[^/?#]+/i.exec(url);
  if (!m) return undefined;
  if (memo?.has(m[0])) return memo.get(m[0]);
  const r = registryOf(m[0]);
  const origin = /^https?:\/\/[^/]+$/.test(r) ? r : undefined;
  memo?.set(m[0], origin);
  return origin;
}

// The manager's get-task and delete-task jobs, answered from the scheduler's
// view of the task (its peers and their hosts).
export class TaskJobs {
  constructor(private readonly deps: TaskJobsDeps) {}

  listPeers(req: schedulerv1.ListTaskPeersRequest): schedulerv1.ListTaskPeersResponse {
    checkTaskId(req.taskId);
    const { store } = this.deps;
    const task = store.tasks.get(req.taskId);
    const peers = task
      ? store.taskPeers(task).flatMap((p) => {
          const h = this.liveHost(p.hostId);
          return h
            ? [
                create(schedulerv1.TaskPeerSchema, {
                  peerId: p.id,
                  hostId: h.id,
                  hostname: h.hostname,
                  ip: h.ip,
                  seed: h.isSeed,
                  state: p.state,
                  finishedPieces: p.finishedPieces,
                  totalPieces: Math.max(0, task.totalPieces),
                }),
              ]
            : [];
        })
      : [];
    return create(schedulerv1.ListTaskPeersResponseSchema, { taskId: req.taskId, peers });
  }

  // Origins of the content-addressed tasks (OCI blobs) known here: where the
  // cluster's daemons pulled from. Only scheme://host[:port]: a URL's path
  // and query (signed URLs) and any userinfo never leave the scheduler.
  // O(tasks) per call; the manager asks once per refresh.
  registries(): schedulerv1.ListRegistriesResponse {
    const seen = new Set<string>();
    const memo = new Map<string, string | undefined>();
    for (const task of this.deps.store.tasks.values()) {
      const d = task.download;
      if (!d?.digestTaskId) continue;
      const origin = urlOrigin(d.url, memo);
      if (origin) seen.add(origin);
      if (seen.size >= MAX_REGISTRIES) break;
    }
    return create(schedulerv1.ListRegistriesResponseSchema, { registries: [...seen] });
  }

  // Hosts holding each task whole (a peer that succeeded, or has every
  // piece), on live hosts; host names sent once, tasks refer to them by index.
  holders(req: schedulerv1.ListTaskHoldersRequest): schedulerv1.ListTaskHoldersResponse {
    if (req.taskIds.length > MAX_HOLDER_TASKS) {
      throw new DamselflyError("DF_ERR_INVALID_REQUEST", `at most ${MAX_HOLDER_TASKS} task IDs per ListTaskHolders`);
    }
    for (const id of req.taskIds) checkTaskId(id);
    const { store } = this.deps;
    const hostIndex = new Map<string, number>();
    const tasks: schedulerv1.TaskHolders[] = [];
    for (const taskId of req.taskIds) {
      const task = store.tasks.get(taskId);
      if (!task) continue;
      const hosts = new Set<number>();
      for (const p of store.taskPeers(task)) {
        if (p.state !== "succeeded" && !(task.totalPieces > 0 && p.finishedPieces === task.totalPieces)) continue;
        const h = this.liveHost(p.hostId);
        if (!h) continue;
        let i = hostIndex.get(h.hostname);
        if (i === undefined) hostIndex.set(h.hostname, (i = hostIndex.size));
        hosts.add(i);
      }
      tasks.push(create(schedulerv1.TaskHoldersSchema, { taskId, hosts: [...hosts] }));
    }
    return create(schedulerv1.ListTaskHoldersResponseSchema, { hostnames: [...hostIndex.keys()], tasks });
  }

  async delete(req: schedulerv1.DeleteTaskRequest): Promise<schedulerv1.DeleteTaskResponse> {
    checkTaskId(req.taskId);
    const { store, events, logger } = this.deps;
    const task = store.tasks.get(req.taskId);
    const peers = task ? store.taskPeers(task) : [];
    const results = await Promise.all(
      peers.map(async (p) => {
        const h = this.liveHost(p.hostId);
        if (!h || h.apiPort === 0) {
          events.removePeer(p);
          return undefined;
        }
        const base = { hostId: h.id, hostname: h.hostname, ip: h.ip };
        try {
          await this.deps.clients.get(h).deleteTask({ taskId: req.taskId }, { timeoutMs: 10_000, headers: clusterTokenHeaders(this.deps.clusterToken) });
          events.removePeer(p);
          return create(schedulerv1.PreheatHostResultSchema, { ...base, success: true });
        } catch (err) {
          const e = fromConnectError(err, "DF_ERR_DAEMON_UNAVAILABLE");
          return create(schedulerv1.PreheatHostResultSchema, { ...base, success: false, description: `${e.code}: ${e.message}` });
        }
      }),
    );
    const out = results.filter((r): r is schedulerv1.PreheatHostResult => r !== undefined);
    logger.info({ taskId: req.taskId, hosts: out.length, failed: out.filter((r) => !r.success).length }, "task deleted");
    return create(schedulerv1.DeleteTaskResponseSchema, { taskId: req.taskId, results: out });
  }

  private liveHost(id: string): Host | undefined {
    return this.deps.store.hosts.live(id, this.deps.now(), this.deps.config.hostTimeout);
  }
}
