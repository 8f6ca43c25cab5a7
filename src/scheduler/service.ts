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
import type { Replicator } from "./replicas.js";
import type { TaskJobs } from "./task-jobs.js";
import { checkTaskId } from "./validate.js";
import { callerOf, type Caller } from "../protocol/caller.js";
import { requireAnyRole, requireManager } from "./access.js";
import { announceHostHandler, cachedTasksHandler, leaveHostHandler, leaveTasksHandler } from "./host-handlers.js";
import type { RegistrantLimits } from "./limits.js";

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
  limits: RegistrantLimits;
  replicator?: Replicator;
}

// Any failure leaves a handler as a ConnectError carrying our stable code.
async function guard<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw err instanceof ConnectError ? err : toConnectError(err);
  }
}

// A handler of (request, caller) as a Connect handler: the caller comes from
// the connection (protocol/caller.ts).
function viaConnect<I, O>(h: (req: I, caller: Caller) => O | Promise<O>): (req: I, ctx: HandlerContext) => Promise<O> {
  return (req, ctx) => guard(() => h(req, callerOf(ctx)));
}

function statTaskHandler(deps: ServiceDeps): (req: schedulerv1.StatTaskRequest, ctx: HandlerContext) => Promise<schedulerv1.StatTaskResponse> {
  const { store, engine } = deps;
  return (req, ctx) =>
    guard(() => {
      requireAnyRole(callerOf(ctx), "StatTask");
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
        digest: task.cacheDigest ?? "",
        noOrigin: task.cacheDigest !== undefined,
      });
    });
}

// The manager's scheduler extender: which hosts hold which layers, and
// which registries the daemons pulled from. Any role, as ListTaskPeers.
function extenderHandlers(deps: ServiceDeps): Pick<ServiceImpl<typeof schedulerv1.SchedulerService>, "listTaskHolders" | "listRegistries"> {
  return {
    listTaskHolders: (req, ctx) =>
      guard(() => {
        requireAnyRole(callerOf(ctx), "ListTaskHolders");
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        return deps.taskJobs.holders(req);
      }),
    listRegistries: (_req, ctx) =>
      guard(() => {
        requireAnyRole(callerOf(ctx), "ListRegistries");
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        return deps.taskJobs.registries();
      }),
  };
}

export function createSchedulerService(deps: ServiceDeps): ServiceImpl<typeof schedulerv1.SchedulerService> {
  const log = deps.logger;

  // Connect's path (the Connect protocol, gRPC-web, compressed or with a
  // deadline); plain gRPC calls take the fast path (fastRoutes).
  async function* announcePeer(
    requests: AsyncIterable<schedulerv1.AnnouncePeerRequest>,
    ctx: HandlerContext,
  ): AsyncGenerator<schedulerv1.AnnouncePeerResponse> {
    const queue = new AsyncQueue<schedulerv1.AnnouncePeerResponse>();
    const call = openAnnounceCall(deps, queue, traceOfHeaders(ctx.requestHeader), callerOf(ctx));
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

  // The manager's jobs: a manager certificate with TLS, and the cluster
  // token when one is set.
  const managerOnly =
    <I, O>(what: string, job: (req: I) => O | Promise<O>) =>
    (req: I, ctx: HandlerContext): Promise<O> =>
      guard(() => {
        requireManager(callerOf(ctx), what);
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        return job(req);
      });

  return {
    announceHost: viaConnect(announceHostHandler(deps)),
    leaveHost: viaConnect(leaveHostHandler(deps)),
    announceCachedTasks: viaConnect(cachedTasksHandler(deps)),
    leaveTasks: viaConnect(leaveTasksHandler(deps)),
    announcePeer,
    preheatTask: managerOnly("PreheatTask", (req: schedulerv1.PreheatTaskRequest) => deps.preheater.preheat(req)),
    deleteTask: managerOnly("DeleteTask", (req: schedulerv1.DeleteTaskRequest) => deps.taskJobs.delete(req)),
    // Any role; the cluster token when one is set (the manager asks).
    listTaskPeers: (req, ctx) =>
      guard(() => {
        requireAnyRole(callerOf(ctx), "ListTaskPeers");
        checkClusterToken(deps.clusterToken, ctx.requestHeader);
        return deps.taskJobs.listPeers(req);
      }),
    ...extenderHandlers(deps),
    statTask: statTaskHandler(deps),
    // A peer or seed-peer, for a host it owns (replicas.ts).
    replicateTask: viaConnect((req: schedulerv1.ReplicateTaskRequest, caller) => {
      if (!deps.replicator) throw new DamselflyError("DF_ERR_INTERNAL", "this scheduler places no replicas");
      return deps.replicator.replicate(req, caller);
    }),
    grantImport: viaConnect((req: schedulerv1.GrantImportRequest, caller) => {
      if (!deps.replicator) throw new DamselflyError("DF_ERR_INTERNAL", "this scheduler grants no imports");
      return deps.replicator.grantImport(req, caller);
    }),
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
      (sink, h, caller) => openAnnounceCall(deps, sink, traceOfHeaders(h), caller),
      decodeAnnouncePeerRequest,
    ),
    grpcUnaryRoute(`/${svc.typeName}/${host.name}`, host.input, host.output, announceHostHandler(deps)),
  ];
}
