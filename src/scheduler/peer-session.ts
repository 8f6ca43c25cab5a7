import { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../common/logger.js";
import { SpanKind, startSpan } from "../common/trace.js";
import { toConnectError, type BidiSink, type schedulerv1 } from "../protocol/index.js";
import type { PeerCounters } from "./peer-counters.js";
import type { Peer } from "./resources/peer-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { SchedulingEngine } from "./scheduling/engine.js";
import type { PeerEvents } from "./scheduling/peer-events.js";
import { checkId, checkTaskId, hostNotAnnounced, invalid } from "./validate.js";
import type { Caller } from "../protocol/caller.js";
import { checkOwner, checkPeerId, registrantOf } from "./access.js";
import type { RegistrantLimits } from "./limits.js";
import { checkGeometryReport } from "./resources/task-geometry.js";

export interface IncomingTrace {
  traceparent: string | undefined;
  tracestate?: string | undefined;
}

export interface AnnounceDeps {
  logger: Logger;
  store: ResourceStore;
  engine: SchedulingEngine;
  events: PeerEvents;
  counters: PeerCounters;
  limits: RegistrantLimits;
}

export interface AnnounceCall {
  // False once the call was rejected: stop reading requests.
  message(req: schedulerv1.AnnouncePeerRequest): boolean;
  // The client half-closed the stream: close ours too.
  end(): void;
  // The call is over (aborted or broken). Idempotent.
  gone(): void;
}

// One AnnouncePeer call, whichever server path carries it (the gRPC fast
// path or Connect): requests go to the call's PeerSession, responses to the
// sink. `trace`: the W3C trace context the daemon sent with the call;
// `caller`: who is on the other end of the connection.
export function openAnnounceCall(
  deps: AnnounceDeps,
  sink: BidiSink<schedulerv1.AnnouncePeerResponse>,
  trace: IncomingTrace | undefined,
  caller: Caller,
): AnnounceCall {
  return new PeerSession(deps, sink, caller, trace?.traceparent ? trace : undefined);
}

// One AnnouncePeer stream: validates each message and routes it to
// PeerEvents; a request the stream cannot survive ends it with that error.
// A class, not an object of closures: one of these lives for every open
// stream, so what it holds stays on the heap through every young GC.
export class PeerSession implements AnnounceCall {
  private peer: Peer | undefined;
  private ended = false;
  private rejected = false;

  constructor(
    private readonly deps: AnnounceDeps,
    private readonly queue: BidiSink<schedulerv1.AnnouncePeerResponse>,
    private readonly caller: Caller,
    // The daemon's download span: registrations and reschedules are its
    // children (one span per decision, never per piece).
    private readonly trace?: IncomingTrace,
  ) {}

  private get store(): ResourceStore {
    return this.deps.store;
  }

  private get events(): PeerEvents {
    return this.deps.events;
  }

  private get log(): Logger {
    return this.deps.logger;
  }

  private now(): number {
    return this.deps.engine.now();
  }

  message(req: schedulerv1.AnnouncePeerRequest): boolean {
    if (this.rejected) return false;
    try {
      this.handle(req);
      return true;
    } catch (err) {
      this.rejected = true;
      const ce = err instanceof ConnectError ? err : toConnectError(err);
      this.log.warn({ hostId: req.hostId, taskId: req.taskId, peerId: req.peerId, code: ce.code, err: ce.rawMessage }, "announce stream rejected");
      this.queue.close(ce);
      this.gone();
      return false;
    }
  }

  end(): void {
    this.queue.close();
    this.gone();
  }

  // Throws (DamselflyError or ConnectError) on a request the stream cannot survive.
  private handle(req: schedulerv1.AnnouncePeerRequest): void {
    if (this.ended) return;
    if (this.peer) this.onMessage(this.peer, req);
    else this.register(req);
  }

  // The stream's first message: a peer of a host the caller owns, within
  // its registrant's caps.
  private register(req: schedulerv1.AnnouncePeerRequest): void {
    const r = req.request;
    const reg = registrantOf(this.caller, "AnnouncePeer");
    checkId("host_id", req.hostId);
    checkId("peer_id", req.peerId);
    checkTaskId(req.taskId);
    if (r.case !== "registerPeer") throw invalid(`first message must be register_peer, got ${r.case ?? "nothing"}`);
    const host = this.store.hosts.get(req.hostId);
    if (!host) throw hostNotAnnounced(req.hostId);
    checkOwner(reg, host);
    checkPeerId(reg, this.store, req.peerId);
    const newTask = this.store.tasks.get(req.taskId) === undefined;
    this.deps.limits.admitPeers(host, this.store.peers.get(req.peerId)?.hostId === host.id ? 0 : 1, newTask ? 1 : 0);
    this.store.hosts.touch(host, this.now());
    const download = r.value.download;
    if (!download || download.url === "") throw invalid("register_peer without a download URL");
    // Attributes only when recording: registrations are the scheduler's
    // hottest path and tracing is usually off.
    const span = startSpan("RegisterPeer", { kind: SpanKind.SERVER, parent: this.trace });
    if (span.recording) {
      span.setAttribute("damselfly.task_id", req.taskId).setAttribute("damselfly.peer_id", req.peerId).setAttribute("damselfly.host_id", req.hostId);
      span.setAttribute("damselfly.seed", host.isSeed).setAttribute("damselfly.finished_pieces", r.value.finishedPieces);
    }
    const t0 = performance.now();
    const fetcher = reg.identity?.fingerprint;
    const { peer, decision } = this.events.register(host, req.taskId, req.peerId, { ...r.value, download }, this.queue, span.context, fetcher);
    const task = newTask ? this.store.tasks.get(req.taskId) : undefined;
    if (task) this.deps.limits.taskCreated(host, task);
    if (span.recording) span.setAttribute("damselfly.decision", decision).setAttribute("damselfly.candidate_parents", peer.candidates.size);
    span.end();
    this.peer = peer;
    // Whatever the decision (it may wait for a seed peer), the daemon learns
    // now that this scheduler is alive and took the registration.
    this.queue.accept?.();
    this.deps.counters.registeredWith(decision, (performance.now() - t0) / 1000);
    this.log.debug({ taskId: req.taskId, peerId: req.peerId, hostId: req.hostId, finishedPieces: r.value.finishedPieces, decision }, "peer registered");
  }

  private onMessage(peer: Peer, req: schedulerv1.AnnouncePeerRequest): void {
    const r = req.request;
    if (req.hostId !== peer.hostId || req.taskId !== peer.taskId || req.peerId !== peer.id) {
      throw invalid("host_id, task_id and peer_id must not change within a stream");
    }
    const host = this.store.hosts.get(peer.hostId);
    if (!host) throw hostNotAnnounced(peer.hostId);
    this.store.hosts.touch(host, this.now());
    // Replaced by a newer stream of the same peer id, or removed: ignore.
    if (this.store.peers.get(peer.id) !== peer) return;
    switch (r.case) {
      case "registerPeer":
        throw invalid("register_peer sent twice on one stream");
      case "downloadPeerStarted":
        this.events.downloadStarted(peer);
        return;
      case "backToSourceStarted":
        this.checkGeometry(r.value.contentLength, r.value.pieceLength, 0, r.value.contentLengthKnown);
        this.events.backToSourceStarted(peer, r.value);
        return;
      case "backToSourceFinished":
      case "peerFinished":
        this.checkGeometry(r.value.contentLength, r.value.pieceLength, r.value.totalPieces, true);
        this.events.finished(peer, r.value.contentLength, r.value.pieceLength, r.value.totalPieces);
        this.deps.counters.finishedVia(r.case);
        this.log.debug({ taskId: peer.taskId, peerId: peer.id, hostId: peer.hostId, via: r.case }, "peer finished");
        return;
      case "backToSourceFailed":
      case "peerFailed":
        this.events.failed(peer, r.value.error);
        return;
      case "pieceFinished":
        this.events.pieceFinished(peer, r.value);
        return;
      case "piecesFinished":
        for (const piece of r.value.pieces) this.events.pieceFinished(peer, piece);
        return;
      case "pieceFailed":
        this.events.pieceFailed(peer, r.value);
        return;
      case "reschedule":
        this.reschedule(peer, r.value);
        return;
      case undefined:
        throw invalid("empty announce message");
    }
  }

  // Out of bounds ends the stream (DF_ERR_GEOMETRY_INVALID) before anything
  // is recorded; a report that contradicts the task's geometry is refused
  // by the task itself (resources/task-geometry.ts).
  private checkGeometry(contentLength: bigint, pieceLength: bigint, totalPieces: number, known: boolean): void {
    checkGeometryReport({ contentLength, pieceLength, totalPieces, known }, this.deps.engine.config.limits.maxContentLength);
  }

  private reschedule(peer: Peer, req: schedulerv1.RescheduleRequest): void {
    const t0 = performance.now();
    const span = startSpan("Reschedule", { kind: SpanKind.SERVER, parent: this.trace });
    if (span.recording)
      span
        .setAttribute("damselfly.task_id", peer.taskId)
        .setAttribute("damselfly.peer_id", peer.id)
        .setAttribute("damselfly.blocklist", req.blocklistParentIds.length);
    const decision = this.events.reschedule(peer, req);
    if (span.recording) span.setAttribute("damselfly.decision", decision).setAttribute("damselfly.candidate_parents", peer.candidates.size);
    span.end();
    this.deps.counters.rescheduledWith(decision, (performance.now() - t0) / 1000);
    this.log.debug(
      { taskId: peer.taskId, peerId: peer.id, hostId: peer.hostId, blocklist: req.blocklistParentIds, description: req.description, decision },
      "peer rescheduled",
    );
  }

  // The stream is over (ended, failed or aborted). Idempotent.
  gone(): void {
    if (this.ended) return;
    this.ended = true;
    const peer = this.peer;
    if (!peer || peer.queue !== this.queue) {
      this.queue.close();
      return;
    }
    this.events.streamClosed(peer);
    this.log.debug({ taskId: peer.taskId, peerId: peer.id, hostId: peer.hostId, state: peer.state }, "peer stream closed");
  }
}
