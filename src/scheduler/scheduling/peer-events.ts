import { HostProbes, type ProbeFn } from "./host-probe.js";
import type { SpanContext } from "../../common/trace.js";
import { isCacheDigestOf, isCacheDownloadOf, type BidiSink, type Download, type ErrorDetail, type schedulerv1 } from "../../protocol/index.js";
import type { Host } from "../resources/host-manager.js";
import type { Peer } from "../resources/peer-manager.js";
import type { Task } from "../resources/task-manager.js";
import type { Decision, SchedulingEngine } from "./engine.js";
import { errorDetail, isOriginFailure } from "./responses.js";

// Failures of one parent (non-temporary) before the child blocklists it.
export const PARENT_FAILURE_LIMIT = 2;

// State changes driven by peers and hosts; decisions are left to the engine.
export class PeerEvents {
  private readonly probes: HostProbes;

  constructor(
    private readonly engine: SchedulingEngine,
    // Without one, children's reports only wait for the host's keep-alive
    // timeout (tests of the engine alone).
    probe: ProbeFn = async () => true,
  ) {
    this.probes = engine.probes = new HostProbes({
      probe,
      now: () => engine.now(),
      log: engine.log,
      dead: (host) => this.removeHost(host),
      lookup: (id) => this.store.hosts.get(id),
    });
  }

  // A child says this parent failed it: the scheduler checks its host.
  private suspect(parentId: string): void {
    const parent = this.store.peers.get(parentId);
    if (parent) this.probes.suspect(parent.hostId);
  }

  private get store() {
    return this.engine.store;
  }

  register(
    host: Host,
    taskId: string,
    peerId: string,
    reg: schedulerv1.RegisterPeerRequest & { download: Download },
    queue: BidiSink<schedulerv1.AnnouncePeerResponse>,
    trace?: SpanContext,
    // With TLS: the fingerprint of the stream's certificate (a grant names it).
    fingerprint?: string,
  ): { peer: Peer; decision: Decision } {
    const now = this.engine.now();
    const known = this.store.tasks.get(taskId) !== undefined;
    const task = this.store.tasks.getOrCreate(taskId, now);
    if (!known && reg.finishedPieces > 0) task.rejoinedAt = now;
    task.download = reg.download;
    if (task.cacheDigest === undefined && isCacheDownloadOf(reg.download, taskId)) task.cacheDigest = reg.download.digest;
    if (trace && !task.trace) task.trace = trace;
    const { peer, replaced } = this.store.addPeer(task, host, peerId, now);
    if (replaced) {
      replaced.queue?.close();
      replaced.queue = undefined;
      // The same peer on the same host re-registering (a resumed or repaired
      // download) still serves what it has: its children keep it.
      const old = this.store.tasks.get(replaced.taskId);
      if (old && (replaced.hostId !== host.id || replaced.taskId !== taskId)) this.engine.rescheduleChildren(old, [replaced.id]);
    }
    peer.queue = queue;
    peer.fingerprint = fingerprint;
    peer.finishedPieces = reg.finishedPieces;
    peer.disableBackToSource = reg.download.disableBackToSource;
    const decision = this.engine.schedule(peer);
    this.engine.wake(task);
    return { peer, decision };
  }

  downloadStarted(peer: Peer): void {
    this.engine.transition(peer, "started");
  }

  backToSourceStarted(peer: Peer, req: schedulerv1.BackToSourceStartedRequest): void {
    const task = this.taskOf(peer);
    if (!task) return;
    task.recordStarted(req.contentLength, req.pieceLength, req.contentLengthKnown, peer.granted);
    this.engine.settle(peer, task, "source");
    peer.sourceStarted = true;
    this.engine.wake(task);
  }

  finished(peer: Peer, contentLength: bigint, pieceLength: bigint, totalPieces: number): void {
    const task = this.taskOf(peer);
    if (!task) return;
    task.recordFinished(contentLength, pieceLength, totalPieces, peer.granted);
    task.failure = undefined;
    this.engine.succeed(peer, task);
    peer.forgetParents();
    this.engine.seeds.onPeerFinished(task);
    this.engine.wake(task);
  }

  failed(peer: Peer, error: ErrorDetail | undefined): void {
    const task = this.taskOf(peer);
    if (!task) return;
    const detail = error ?? errorDetail("DF_ERR_INTERNAL", "peer failed without a reason");
    // Only a peer the scheduler sent to the origin speaks for the origin:
    // anyone else's "404" fails no one but itself.
    const wasSource = peer.granted && (peer.state === "backToSource" || task.backToSourcePeers.has(peer.id));
    this.engine.settle(peer, task, "failed");
    const log = { taskId: task.id, peerId: peer.id, hostId: peer.hostId, code: detail.code, status: detail.source?.statusCode };
    if (task.seedTrigger && task.seedTrigger.hostId === peer.hostId) task.seedTrigger.failed = true;
    if (wasSource && isOriginFailure(detail)) {
      this.engine.log.warn(log, "origin failed: failing the task");
      task.failure = { detail, at: this.engine.now() };
      this.propagateOriginFailure(task, peer, detail);
    } else {
      this.engine.log.warn(log, "peer failed");
    }
    this.engine.rescheduleChildren(task, [peer.id]);
    this.engine.wake(task);
  }

  // Every peer that can only be waiting for the failed one fails alike.
  private propagateOriginFailure(task: Task, failed: Peer, detail: ErrorDetail): void {
    for (const p of this.store.taskPeers(task)) {
      if (p === failed || !p.hasStream || !p.isActive || p.state === "backToSource") continue;
      let hasLiveParent = false;
      for (const id of p.candidates.keys()) {
        const parent = this.store.peers.get(id);
        if (id !== failed.id && parent && parent.state !== "failed") hasLiveParent = true;
      }
      if (p.isWaiting || p.state === "pending" || !hasLiveParent) this.engine.fail(p, task, detail);
    }
  }

  // Per piece: keep it cheap.
  pieceFinished(peer: Peer, req: schedulerv1.PieceFinishedRequest): void {
    peer.finishedPieces++;
    if (peer.takingOver) {
      const task = this.taskOf(peer);
      if (task) this.engine.seeds.caughtUp(peer, task);
    }
    if (req.parentId !== "" && req.costMicros > 0n) {
      const bytes = Number(req.length);
      const micros = Number(req.costMicros);
      peer.recordParentCost(req.parentId, bytes, micros);
      const parent = this.store.peers.get(req.parentId);
      if (parent) this.store.hosts.get(parent.hostId)?.recordThroughput(bytes, micros);
    }
    if (peer.finishedPieces === 1) {
      const task = this.taskOf(peer);
      if (task) {
        this.engine.wake(task);
        this.engine.offerParent(task, peer);
      }
    }
  }

  pieceFailed(peer: Peer, req: schedulerv1.PieceFailedRequest): void {
    if (req.parentId !== "") this.suspect(req.parentId);
    if (req.temporary || req.parentId === "" || peer.blocklist.has(req.parentId)) return;
    if (peer.countParentFailure(req.parentId) < PARENT_FAILURE_LIMIT) return;
    peer.block(req.parentId);
    this.store.dropCandidate(peer, req.parentId);
    const task = this.taskOf(peer);
    if (!task || !peer.isActive) return;
    const parents = this.engine.select(peer, task);
    if (parents.length > 0) this.engine.sendNormal(peer, task, parents);
  }

  reschedule(peer: Peer, req: schedulerv1.RescheduleRequest): Decision {
    const task = this.taskOf(peer);
    if (!task) return "gone";
    for (const id of req.blocklistParentIds) {
      if (id === "") continue;
      this.suspect(id);
      peer.block(id);
      this.store.dropCandidate(peer, id);
    }
    peer.rescheduleCount++;
    if (peer.rescheduleCount > this.engine.config.retryLimit && this.engine.canBackToSource(peer, task)) {
      this.engine.backToSource(peer, task, `rescheduled ${peer.rescheduleCount} times`);
      return "need_back_to_source";
    }
    if (peer.state !== "pending" && !this.engine.hasFeed(task, peer) && this.engine.canBackToSource(peer, task)) {
      this.engine.backToSource(peer, task, "no peer is fetching the task");
      return "need_back_to_source";
    }
    return this.engine.schedule(peer);
  }

  // The peer's stream ended. A finished peer stays as a parent (its host
  // still serves the data); any other peer leaves the task.
  streamClosed(peer: Peer): void {
    if (peer.state !== "succeeded") {
      // Its daemon may be gone with the stream: check the host now, and
      // again shortly (a process being killed may still accept a connection).
      this.probes.suspect(peer.hostId, 2);
      return this.removePeer(peer);
    }
    const queue = peer.queue;
    peer.queue = undefined;
    queue?.close();
    const task = this.taskOf(peer);
    if (task) this.engine.stopWaiting(peer, task);
  }

  // A peer whose host no longer holds the task (deleted there): it leaves
  // the task and its children get other parents.
  removePeer(peer: Peer): void {
    const queue = peer.queue;
    peer.queue = undefined;
    queue?.close();
    const task = this.taskOf(peer);
    if (!this.store.detachPeer(peer) || !task) return;
    this.engine.rescheduleChildren(task, [peer.id]);
    this.engine.wake(task);
  }

  // Removes a host and its peers; their children get rescheduled.
  removeHost(host: Host, closeWith?: unknown): Peer[] {
    const removed = this.store.removeHost(host);
    if (host.isSeed) this.engine.seeds.hostGone(host.id);
    const byTask = new Map<string, string[]>();
    for (const p of removed) {
      const q = p.queue;
      p.queue = undefined;
      q?.close(closeWith);
      const ids = byTask.get(p.taskId) ?? [];
      ids.push(p.id);
      byTask.set(p.taskId, ids);
    }
    for (const [taskId, ids] of byTask) {
      const task = this.store.tasks.get(taskId);
      if (!task) continue;
      this.engine.rescheduleChildren(task, ids);
      this.engine.wake(task);
    }
    return removed;
  }

  // Returns how many were skipped: their geometry contradicts the task's.
  cachedTasks(host: Host, tasks: readonly schedulerv1.CachedTask[]): number {
    const now = this.engine.now();
    const woken = new Set<Task>();
    let skipped = 0;
    for (const c of tasks) {
      const task = this.store.tasks.getOrCreate(c.taskId, now);
      if (c.digest && task.cacheDigest === undefined && isCacheDigestOf(c.taskId, c.digest)) task.cacheDigest = c.digest;
      try {
        task.recordFinished(c.contentLength, c.pieceLength, c.totalPieces);
      } catch {
        skipped++;
        continue;
      }
      let peer = this.store.peers.get(c.peerId);
      if (!peer || peer.taskId !== task.id || peer.hostId !== host.id) {
        if (peer) this.streamClosedSilently(peer);
        peer = this.store.addPeer(task, host, c.peerId, now).peer;
      }
      this.engine.succeed(peer, task);
      woken.add(task);
    }
    for (const t of woken) this.engine.wake(t);
    return skipped;
  }

  private streamClosedSilently(peer: Peer): void {
    peer.queue?.close();
    peer.queue = undefined;
    this.store.detachPeer(peer);
  }

  private taskOf(peer: Peer): Task | undefined {
    return this.store.tasks.get(peer.taskId);
  }
}
