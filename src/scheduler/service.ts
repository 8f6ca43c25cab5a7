import { create } from "@bufbuild/protobuf";
import { ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { AsyncQueue } from "../common/async-queue.js";
import { DamselflyError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { SchedulerConfig } from "../common/schemas.js";
import { traceOfHeaders } from "../common/trace.js";
import { checkClusterToken, decodeAnnouncePeerRequest, grpcBidiRoute, grpcUnaryRoute, schedulerv1, toConnectError, type FastRoute } from "../protocol/index.js";
import { openAnnounceCall } from "./peer-session.js";
import type { PeerCounters } from "./peer-counters.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { SchedulingEngine } from "./scheduling/engine.js";
import type { PeerEvents } from "./scheduling/peer-events.js";
import type { Preheater } from "./preheat.js";
import type { TaskJobs } from "./task-jobs.js";
import { checkId, checkTaskId, hostNotAnnounced, invalid } from "./validate.js";

export interface ServiceDeps {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  engine: SchedulingEngine;
  events: PeerEvents;
  preheater: Preheater;
  taskJobs: TaskJobs;
  clusterToken?: string | undefined;
  counters: PeerCounters;
}

const MAX_LEFT_TASKS = 10_000;

// Any failure leaves a handler as a ConnectError carrying our stable code.
async function guard<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof ConnectError ? err : toConnectError(err);
  }
}

// The keep-alive every daemon sends every announce interval.
function announceHostHandler(deps: ServiceDeps): (req: schedulerv1.AnnounceHostRequest) => Promise<schedulerv1.AnnounceHostResponse> {
  const { config, logger: log, store, engine } = deps;
  return (req) =>
    guard(() => {
      const h = req.host;
      if (!h) throw invalid("announce without a host");
      checkId("host.id", h.id);
      if (h.ip === "") throw invalid("host.ip is empty");
      const { host, created } = store.upsertHost(h, req.intervalSeconds, engine.now(), config);
      if (created) log.info({ hostId: host.id, hostname: host.hostname, ip: host.ip, seed: host.isSeed, uploadSlots: host.uploadSlots }, "host announced");
      return create(schedulerv1.AnnounceHostResponseSchema, { newHost: created, batchedPieceReports: true });
    });
}

// A daemon evicted or deleted tasks: its peers of them are no parents
// any more. A peer still downloading (its stream open) is left alone: the
// same peer ID may already be fetching the task again.
function leaveTasksHandler(deps: ServiceDeps): (req: schedulerv1.LeaveTasksRequest) => Promise<schedulerv1.LeaveTasksResponse> {
  const { logger: log, store, events } = deps;
  return (req) =>
    guard(() => {
      checkId("host_id", req.hostId);
      if (req.tasks.length > MAX_LEFT_TASKS) throw invalid(`at most ${MAX_LEFT_TASKS} tasks per call`);
      for (const t of req.tasks) {
        checkTaskId(t.taskId);
        checkId("peer_id", t.peerId);
      }
      let removed = 0;
      for (const t of req.tasks) {
        const peer = store.peers.get(t.peerId);
        if (!peer || peer.hostId !== req.hostId || peer.taskId !== t.taskId || peer.queue) continue;
        events.removePeer(peer);
        removed++;
      }
      if (removed > 0) log.info({ hostId: req.hostId, peers: removed }, "host left tasks");
      return create(schedulerv1.LeaveTasksResponseSchema, { removed });
    });
}

function statTaskHandler(deps: ServiceDeps): (req: schedulerv1.StatTaskRequest) => Promise<schedulerv1.StatTaskResponse> {
  const { store, engine } = deps;
  return (req) =>
    guard(() => {
      checkTaskId(req.taskId);
      const task = store.tasks.get(req.taskId);
      if (!task) throw new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${req.taskId} not found`);
      const finished = task.succeeded.size;
      const now = engine.now();
      const state =
        finished > 0
          ? "succeeded"
          : task.recentFailure(now, Number.POSITIVE_INFINITY)
            ? "failed"
            : [...task.peers].some((p) => p.isActive)
              ? "running"
              : "pending";
      return create(schedulerv1.StatTaskResponseSchema, {
        taskId: task.id,
        task: task.toInfo(),
        peerCount: task.peers.size,
        finishedPeerCount: finished,
        backToSourcePeerCount: task.backToSourcePeers.size,
        state,
      });
    });
}

export function createSchedulerService(deps: ServiceDeps): ServiceImpl<typeof schedulerv1.SchedulerService> {
  const { logger: log, store, engine, events } = deps;

  // Connect's path (the Connect protocol, gRPC-web, compressed or with a
  // deadline); plain gRPC calls take the fast path (fastRoutes).
  async function* announcePeer(
    requests: AsyncIterable<schedulerv1.AnnouncePeerRequest>,
    ctx: HandlerContext,
  ): AsyncGenerator<schedulerv1.AnnouncePeerResponse> {
    const queue = new AsyncQueue<schedulerv1.AnnouncePeerResponse>();
    const call = openAnnounceCall(deps, queue, traceOfHeaders(ctx.requestHeader));
    const onAbort = () => call.gone();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    void (async () => {
      try {
        for await (const req of requests) if (!call.message(req)) return;
        call.end();
      } catch (err) {
        // The client went away mid-stream: nothing to answer.
        log.debug({ err: err instanceof Error ? err.message : String(err) }, "announce stream broken");
        queue.close();
        call.gone();
      }
    })();
    try {
      yield* queue;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      call.gone();
    }
  }

  return {
    announceHost: announceHostHandler(deps),

    leaveHost: (req) =>
      guard(() => {
        const host = store.hosts.get(req.hostId);
        if (host) {
          const removed = events.removeHost(host);
          log.info({ hostId: host.id, peers: removed.length }, "host left");
        }
        return create(schedulerv1.LeaveHostResponseSchema, {});
      }),

    announceCachedTasks: (req) =>
      guard(() => {
        const host = store.hosts.get(req.hostId);
        if (!host) throw hostNotAnnounced(req.hostId);
        for (const t of req.tasks) {
          checkTaskId(t.taskId);
          checkId("peer_id", t.peerId);
        }
        store.hosts.touch(host, engine.now());
        events.cachedTasks(host, req.tasks);
        log.info({ hostId: host.id, tasks: req.tasks.length }, "cached tasks announced");
        return create(schedulerv1.AnnounceCachedTasksResponseSchema, {});
      }),

    leaveTasks: leaveTasksHandler(deps),
    announcePeer,

    // The manager's jobs: only with the cluster token, when one is set.
    preheatTask: (req, ctx) => guard(() => (checkClusterToken(deps.clusterToken, ctx.requestHeader), deps.preheater.preheat(req))),
    listTaskPeers: (req, ctx) => guard(() => (checkClusterToken(deps.clusterToken, ctx.requestHeader), deps.taskJobs.listPeers(req))),
    deleteTask: (req, ctx) => guard(() => (checkClusterToken(deps.clusterToken, ctx.requestHeader), deps.taskJobs.delete(req))),
    statTask: statTaskHandler(deps),
  };
}

// AnnouncePeer and AnnounceHost, nearly all of the scheduler's traffic, in
// plain gRPC (what daemons send) without Connect's pipeline.
export function fastRoutes(deps: ServiceDeps): FastRoute[] {
  const svc = schedulerv1.SchedulerService;
  const peer = svc.method.announcePeer;
  const host = svc.method.announceHost;
  return [
    grpcBidiRoute(
      `/${svc.typeName}/${peer.name}`,
      peer.input,
      peer.output,
      (sink, h) => openAnnounceCall(deps, sink, traceOfHeaders(h)),
      decodeAnnouncePeerRequest,
    ),
    grpcUnaryRoute(`/${svc.typeName}/${host.name}`, host.input, host.output, announceHostHandler(deps)),
  ];
}
