import { create } from "@bufbuild/protobuf";
import type { Logger } from "../common/logger.js";
import type { SchedulerConfig } from "../common/schemas.js";
import { clusterTokenHeaders, fromConnectError, schedulerv1 } from "../protocol/index.js";
import type { DaemonClients } from "./daemon-clients.js";
import type { Host } from "./resources/host-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { PeerEvents } from "./scheduling/peer-events.js";
import { checkTaskId } from "./validate.js";

export interface TaskJobsDeps {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  events: PeerEvents;
  clients: DaemonClients;
  now: () => number;
  clusterToken?: string | undefined;
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
