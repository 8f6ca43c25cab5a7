import { create } from "@bufbuild/protobuf";
import type { Caller } from "../protocol/caller.js";
import { schedulerv1 } from "../protocol/index.js";
import { checkHostAnnouncement, checkOwner, checkPeerId, registrantOf } from "./access.js";
import { checkGeometryReport } from "./resources/task-geometry.js";
import type { ServiceDeps } from "./service.js";
import { checkId, checkTaskId, hostNotAnnounced, invalid } from "./validate.js";

const MAX_LEFT_TASKS = 10_000;

// The keep-alive every daemon sends every announce interval. With TLS it
// binds the host to the caller's certificate (access.ts).
export function announceHostHandler(deps: ServiceDeps): (req: schedulerv1.AnnounceHostRequest, caller: Caller) => schedulerv1.AnnounceHostResponse {
  const { config, logger: log, store, engine, limits } = deps;
  return (req, caller) => {
    const r = registrantOf(caller, "AnnounceHost");
    const h = req.host;
    if (!h) throw invalid("announce without a host");
    checkId("host.id", h.id);
    if (h.ip === "") throw invalid("host.ip is empty");
    const existing = store.hosts.get(h.id);
    checkHostAnnouncement(r, h, existing);
    limits.admitHost(r, existing);
    const { host, created } = store.upsertHost(h, req.intervalSeconds, engine.now(), config);
    limits.hostAnnounced(r, host, created);
    if (created) log.info({ hostId: host.id, hostname: host.hostname, ip: host.ip, seed: host.isSeed, uploadSlots: host.uploadSlots }, "host announced");
    return create(schedulerv1.AnnounceHostResponseSchema, { newHost: created, batchedPieceReports: true, registerAck: true });
  };
}

export function leaveHostHandler(deps: ServiceDeps): (req: schedulerv1.LeaveHostRequest, caller: Caller) => schedulerv1.LeaveHostResponse {
  const { logger: log, store, events } = deps;
  return (req, caller) => {
    const r = registrantOf(caller, "LeaveHost");
    const host = store.hosts.get(req.hostId);
    if (host) {
      checkOwner(r, host);
      const removed = events.removeHost(host);
      log.info({ hostId: host.id, peers: removed.length }, "host left");
    }
    return create(schedulerv1.LeaveHostResponseSchema, {});
  };
}

// A daemon's finished tasks (at start, or when a scheduler meets it for the
// first time): all checked before any is taken, counted against its caps.
export function cachedTasksHandler(
  deps: ServiceDeps,
): (req: schedulerv1.AnnounceCachedTasksRequest, caller: Caller) => schedulerv1.AnnounceCachedTasksResponse {
  const { logger: log, store, engine, events, limits } = deps;
  return (req, caller) => {
    const r = registrantOf(caller, "AnnounceCachedTasks");
    const host = store.hosts.get(req.hostId);
    if (!host) throw hostNotAnnounced(req.hostId);
    checkOwner(r, host);
    const max = engine.config.limits.maxContentLength;
    let newPeers = 0;
    const newTasks = new Set<string>();
    for (const t of req.tasks) {
      checkTaskId(t.taskId);
      checkId("peer_id", t.peerId);
      checkGeometryReport({ contentLength: t.contentLength, pieceLength: t.pieceLength, totalPieces: t.totalPieces, known: true }, max);
      checkPeerId(r, store, t.peerId);
      if (store.peers.get(t.peerId)?.hostId !== host.id) newPeers++;
      if (!store.tasks.get(t.taskId)) newTasks.add(t.taskId);
    }
    limits.admitPeers(host, newPeers, newTasks.size);
    store.hosts.touch(host, engine.now());
    const skipped = events.cachedTasks(host, req.tasks);
    for (const id of newTasks) {
      const task = store.tasks.get(id);
      if (task) limits.taskCreated(host, task);
    }
    log.info({ hostId: host.id, tasks: req.tasks.length, ...(skipped > 0 ? { skipped } : {}) }, "cached tasks announced");
    return create(schedulerv1.AnnounceCachedTasksResponseSchema, {});
  };
}

// A daemon evicted or deleted tasks: its peers of them are no parents
// any more. A peer still downloading (its stream open) is left alone: the
// same peer ID may already be fetching the task again.
export function leaveTasksHandler(deps: ServiceDeps): (req: schedulerv1.LeaveTasksRequest, caller: Caller) => schedulerv1.LeaveTasksResponse {
  const { logger: log, store, events } = deps;
  return (req, caller) => {
    const r = registrantOf(caller, "LeaveTasks");
    checkId("host_id", req.hostId);
    if (req.tasks.length > MAX_LEFT_TASKS) throw invalid(`at most ${MAX_LEFT_TASKS} tasks per call`);
    for (const t of req.tasks) {
      checkTaskId(t.taskId);
      checkId("peer_id", t.peerId);
    }
    const host = store.hosts.get(req.hostId);
    if (host) checkOwner(r, host);
    let removed = 0;
    for (const t of req.tasks) {
      const peer = store.peers.get(t.peerId);
      if (!peer || peer.hostId !== req.hostId || peer.taskId !== t.taskId || peer.queue) continue;
      events.removePeer(peer);
      removed++;
    }
    if (removed > 0) log.info({ hostId: req.hostId, peers: removed }, "host left tasks");
    return create(schedulerv1.LeaveTasksResponseSchema, { removed });
  };
}
