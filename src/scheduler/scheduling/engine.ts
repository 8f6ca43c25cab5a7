import type { Logger } from "../../common/logger.js";
import type { SchedulerConfig } from "../../common/schemas.js";
import { encodeNormalTask, type ErrorDetail } from "../../protocol/index.js";
import type { Host } from "../resources/host-manager.js";
import type { Peer, PeerEvent } from "../resources/peer-manager.js";
import type { ResourceStore } from "../resources/resource-store.js";
import type { Task } from "../resources/task-manager.js";
import { isEligibleParent, selectParents } from "./parent-selector.js";
import { emptyTask, errorDetail, localHit, needBackToSource, normalTask, taskFailed } from "./responses.js";
import type { HostProbes } from "./host-probe.js";
import { SeedTriggers, type DelayFn, type TriggerFn } from "./seed-trigger.js";
import type { SchedulerMetrics } from "../metrics.js";

// How far past candidateParentLimit offerParent may grow a child's list.
const OFFER_SLACK = 4;

// An origin failure is replayed to peers that register this soon after it.
export const FAILURE_WINDOW_MS = 10_000;

// How long a swarm coming back to this scheduler gets to re-register before a
// peer with no parent goes to the origin (daemons probe a scheduler that was
// down at least once a second: docs/decisions/scheduler-failover.md).
const REJOIN_GRACE_MS = 3_000;

export type Decision = "normal_task" | "need_back_to_source" | "empty_task" | "local_hit" | "task_failed" | "wait_seed" | "wait" | "gone";

export interface EngineOptions {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  trigger: TriggerFn;
  now?: () => number;
  // The timer of the seed's delayed copy (tests fire it by hand).
  delay?: DelayFn;
  metrics?: SchedulerMetrics;
  // With TLS: signs the grant sent with need_back_to_source (protocol/trust.ts).
  grant?: GrantFn;
}

// The encoded grant naming `fingerprint`'s certificate as the fetcher of a task.
export type GrantFn = (taskId: string, peerId: string, fingerprint: string) => Uint8Array;

// Scheduling decisions: which parents a peer gets, when it goes to the origin,
// when a seed is triggered, and the re-evaluation of waiting peers.
export class SchedulingEngine {
  // Replaced whole when the manager sends new cluster settings.
  config: SchedulerConfig;
  readonly log: Logger;
  readonly store: ResourceStore;
  readonly now: () => number;
  readonly seeds: SeedTriggers;
  // The scheduler's own check of a host (set by PeerEvents, which removes a
  // dead one).
  probes: HostProbes | undefined;
  private readonly metrics: SchedulerMetrics | undefined;
  private readonly grant: GrantFn | undefined;
  private readonly dirty = new Set<string>();
  private flushPending = false;
  private closed = false;
  // State changes the transition table rejected (resources/peer-state.ts).
  rejectedTransitions = 0;

  constructor(opts: EngineOptions) {
    this.config = opts.config;
    this.log = opts.logger;
    this.store = opts.store;
    this.seeds = new SeedTriggers(this, opts.trigger, opts.delay);
    this.now = opts.now ?? Date.now;
    this.metrics = opts.metrics;
    this.grant = opts.grant;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.closed = true;
    this.dirty.clear();
  }

  select(peer: Peer, task: Task, onlyFinished = false): Peer[] {
    return selectParents({
      child: peer,
      peers: onlyFinished ? task.succeeded.items : task.peers.items,
      host: this.liveHostOf,
      totalPieces: task.totalPieces,
      filterParentLimit: this.config.filterParentLimit,
      candidateParentLimit: this.config.candidateParentLimit,
    });
  }

  // One function for every selection, not a closure per call.
  private readonly liveHostOf = (id: string): Host | undefined => this.liveHost(id);

  liveHost(id: string): Host | undefined {
    return this.store.hosts.live(id, this.now(), this.config.hostTimeout);
  }

  // Every state change of a peer goes through the transition table; one it
  // rejects leaves the state as it was and is counted, never thrown.
  transition(peer: Peer, event: PeerEvent): void {
    if (peer.apply(event)) return;
    this.rejectedTransitions++;
    this.log.debug({ taskId: peer.taskId, peerId: peer.id, state: peer.state, event }, "peer state change rejected");
  }

  // The peer stops waiting, drops its candidates and goes to the origin or
  // to an end state: the one path for each of these (whoever said so).
  settle(peer: Peer, task: Task, event: "source" | "finished" | "failed"): void {
    this.stopWaiting(peer, task);
    this.store.clearCandidates(peer);
    if (event === "source") task.backToSourcePeers.add(peer.id);
    else task.backToSourcePeers.delete(peer.id);
    this.transition(peer, event);
  }

  // The peer holds the whole task (it said so, or its host has it cached).
  succeed(peer: Peer, task: Task): void {
    this.settle(peer, task, "finished");
    peer.finishedPieces = task.totalPieces;
  }

  // First decision for a peer (register or reschedule).
  schedule(peer: Peer): Decision {
    const task = this.store.tasks.get(peer.taskId);
    if (!task) return "gone";
    const now = this.now();
    const failure = task.recentFailure(now, FAILURE_WINDOW_MS);
    if (failure) {
      this.fail(peer, task, failure);
      return "task_failed";
    }
    if (task.isEmptyContent) {
      this.stopWaiting(peer, task);
      peer.send(emptyTask());
      return "empty_task";
    }
    if (task.totalPieces > 0 && peer.finishedPieces >= task.totalPieces) {
      this.stopWaiting(peer, task);
      peer.send(localHit(task));
      return "local_hit";
    }
    const peerFirst = this.config.coldStart === "peer";
    if (this.store.hosts.get(peer.hostId)?.isSeed) {
      // With peer-first cold starts the seed copies from the peer that is
      // fetching (the origin sends the task once); otherwise it is the root
      // and takes only complete copies.
      const parents = this.select(peer, task, !peerFirst);
      if (parents.length > 0) {
        this.sendNormal(peer, task, parents);
        return "normal_task";
      }
      if ((!peerFirst || !this.hasFeed(task, peer)) && task.cacheDigest === undefined) {
        if (this.seeds.takeOver(peer, task)) return "normal_task";
        this.backToSource(peer, task, "seed peer fetches from the origin");
        return "need_back_to_source";
      }
      // A peer is fetching it but has nothing to offer yet: wait for it.
    } else {
      const parents = this.select(peer, task);
      if (parents.length > 0) {
        this.sendNormal(peer, task, parents);
        // Several peers want a task that is still arriving: a seed peer joins
        // now and spreads it with its bigger uplink.
        if (peerFirst && !this.hasSucceeded(task)) this.seeds.maybeTrigger(task, now);
        return "normal_task";
      }
      if (peerFirst && !this.hasFeed(task, peer) && !this.seeds.active(task, now) && this.canBackToSource(peer, task)) {
        // Nobody holds or fetches any of it: the first requester goes to the
        // origin itself instead of waiting for a seed peer (one hop less); the
        // seed copies it from this peer once it is done.
        this.backToSource(peer, task, "first peer of a cold task fetches from the origin");
        return "need_back_to_source";
      }
    }
    this.store.clearCandidates(peer);
    if (peer.waitingSince === undefined) {
      peer.waitingSince = now;
      task.waiting.add(peer.id);
    }
    this.seeds.maybeTrigger(task, now);
    return this.evaluateWaiter(peer, task, now);
  }

  // A waiting peer: parents if any, else origin / keep waiting / give up.
  evaluateWaiter(peer: Peer, task: Task, now: number): Decision {
    const parents = this.select(peer, task);
    if (parents.length > 0) {
      this.sendNormal(peer, task, parents);
      return "normal_task";
    }
    const waited = now - (peer.waitingSince ?? now);
    const seedWait = this.config.seedWait;
    if (waited < seedWait && this.seeds.active(task, now)) return "wait_seed";
    // A swarm coming back (this scheduler restarted or took the task over):
    // its peers and seed re-register within a probe interval or two.
    if (task.rejoinedAt !== undefined && now - task.rejoinedAt < REJOIN_GRACE_MS && waited < REJOIN_GRACE_MS) return "wait";
    // An imported task nobody live holds complete can never be completed:
    // there is no origin to go to (after the grace a scheduler that just
    // started gives the holders to announce themselves again).
    if (task.cacheDigest !== undefined && !this.hasFeed(task, peer)) {
      if (now - task.createdAt < REJOIN_GRACE_MS) return "wait";
      this.fail(peer, task, errorDetail("DF_ERR_TASK_NOT_FOUND", `no live peer holds imported task ${task.id}`));
      return "task_failed";
    }
    if (this.canBackToSource(peer, task)) {
      this.backToSource(peer, task, this.seeds.active(task, now) ? "seed peer too slow" : "no peer has the task");
      return "need_back_to_source";
    }
    if (waited >= seedWait && peer.disableBackToSource) {
      this.fail(peer, task, errorDetail("DF_ERR_NO_PARENT"));
      return "task_failed";
    }
    if (waited >= 2 * seedWait) {
      this.fail(peer, task, errorDetail("DF_ERR_BACK_TO_SOURCE_LIMIT"));
      return "task_failed";
    }
    return "wait";
  }

  // Someone `child` may still use can bring new pieces into the task: a
  // finished peer or one fetching from the origin, on a live host, not on the
  // child's blocklist. Without one, peers that still miss pieces wait forever,
  // so one of them must go to the origin.
  hasFeed(task: Task, child: Peer): boolean {
    const usable = (p: Peer) => p !== child && !child.blocklist.has(p.id) && this.liveHost(p.hostId) !== undefined;
    for (const p of task.succeeded) if (usable(p)) return true;
    for (const id of task.backToSourcePeers) {
      const p = this.store.peers.get(id);
      if (p && usable(p)) return true;
    }
    return false;
  }

  private hasSucceeded(task: Task): boolean {
    for (const p of task.succeeded) if (this.liveHost(p.hostId)) return true;
    return false;
  }

  // Nobody left feeds the task: a seed peer takes it over when there is one
  // (the next on the seed ring when the last one died; the same one when it
  // is only re-registering here after a scheduler takeover), else `child`
  // goes to the origin.
  mustFetch(child: Peer, task: Task): boolean {
    const now = this.now();
    this.seeds.maybeTrigger(task, now);
    return !this.seeds.active(task, now) && this.canBackToSource(child, task);
  }

  canBackToSource(peer: Peer, task: Task): boolean {
    return !peer.disableBackToSource && task.cacheDigest === undefined && task.backToSourcePeers.size < this.config.backToSourceLimit;
  }

  sendNormal(peer: Peer, task: Task, parents: readonly Peer[], merge = false): void {
    this.stopWaiting(peer, task);
    if (merge) this.store.addCandidates(peer, parents);
    else this.store.setCandidates(peer, parents);
    if (peer.state === "pending" || peer.state === "backToSource") task.backToSourcePeers.delete(peer.id);
    this.transition(peer, "parents");
    const withHosts: { peer: Peer; host: Host }[] = [];
    for (const p of parents) {
      const host = this.store.hosts.get(p.hostId);
      if (host) withHosts.push({ peer: p, host });
    }
    const q = peer.queue;
    if (q?.pushEncoded) q.pushEncoded(encodeNormalTask(task, withHosts));
    else peer.send(normalTask(task, withHosts));
  }

  // Every need_back_to_source goes through here: the peer is granted the
  // origin (its failures and geometry count for the task), and with TLS it
  // gets the signed grant naming its certificate.
  // `keepParents`: the peer keeps taking what its parents hold.
  backToSource(peer: Peer, task: Task, description: string, keepParents = false): void {
    // An imported task has no origin: whatever path led here, nobody goes.
    if (task.cacheDigest !== undefined)
      return this.fail(peer, task, errorDetail("DF_ERR_NO_PARENT", `no peer can serve imported task ${task.id} (${description})`));
    this.settle(peer, task, "source");
    peer.granted = true;
    const grant = peer.fingerprint !== undefined && this.grant ? this.grant(task.id, peer.id, peer.fingerprint) : undefined;
    peer.send(needBackToSource(description, grant, keepParents));
    this.metrics?.sentToSource();
  }

  fail(peer: Peer, task: Task, detail: ErrorDetail): void {
    this.settle(peer, task, "failed");
    peer.send(taskFailed(detail));
    this.log.warn({ taskId: task.id, peerId: peer.id, hostId: peer.hostId, code: detail.code }, "task failed for peer");
  }

  stopWaiting(peer: Peer, task: Task): void {
    peer.waitingSince = undefined;
    task.waiting.delete(peer.id);
  }

  // Re-evaluates the task soon (coalesced: one pass per task per turn).
  wake(task: Task): void {
    if (this.closed) return;
    this.dirty.add(task.id);
    if (this.flushPending) return;
    this.flushPending = true;
    setImmediate(() => {
      this.flushPending = false;
      const ids = [...this.dirty];
      this.dirty.clear();
      for (const id of ids) {
        const t = this.store.tasks.get(id);
        if (t) this.reevaluate(t);
      }
    });
  }

  // Waiting peers get parents (or the origin); running peers short of
  // candidates get the new full list.
  reevaluate(task: Task): void {
    this.evaluateWaiting(task, this.now(), "wake");
    for (const p of [...task.shortOfParents]) {
      if (p.state !== "running" || p.isWaiting || !p.hasStream || p.candidates.size >= this.config.candidateParentLimit) continue;
      const parents = this.select(p, task);
      if (parents.some((x) => !p.candidates.has(x.id))) this.sendNormal(p, task, parents, true);
    }
  }

  // A peer that just stored its first piece can serve. Children's lists fill
  // up with whoever had pieces first, so a peer that joined last would
  // otherwise stay in nobody's list and its uplink idle
  // (docs/decisions/scheduler-measurements.md). Running peers that do not
  // know it hear of it, fewest candidates first, until it has
  // candidateParentLimit children; a list may grow a little past the limit
  // for this (OFFER_SLACK).
  offerParent(task: Task, parent: Peer): void {
    const host = this.liveHost(parent.hostId);
    if (!host || !parent.isActive) return;
    let want = this.config.candidateParentLimit - host.children.size;
    if (want <= 0) return;
    const cap = this.config.candidateParentLimit + OFFER_SLACK;
    const takers: Peer[] = [];
    for (const p of task.peers) {
      if (p.state !== "running" || !p.hasStream || p.isWaiting || p.candidates.size >= cap || p.candidates.has(parent.id)) continue;
      if (!isEligibleParent(p, parent, host)) continue;
      takers.push(p);
      // Enough to choose from: a huge task is not walked whole per new parent.
      if (takers.length >= 4 * want) break;
    }
    takers.sort((a, b) => a.candidates.size - b.candidates.size);
    for (const p of takers) {
      if (want-- <= 0) break;
      this.sendNormal(p, task, [parent], true);
    }
  }

  // The coarse timer over all waiting peers.
  tick(): void {
    const now = this.now();
    for (const task of this.store.tasks.values()) {
      if (task.waiting.size > 0) this.evaluateWaiting(task, now, "timer");
    }
  }

  private evaluateWaiting(task: Task, now: number, why: string): void {
    for (const id of [...task.waiting]) {
      const p = this.store.peers.get(id);
      if (!p) task.waiting.delete(id);
      else {
        const since = p.waitingSince ?? now;
        this.logDecision(p, this.evaluateWaiter(p, task, now), why, now - since);
      }
    }
  }

  // Children that used removed parents get a fresh list (when one exists).
  rescheduleChildren(task: Task, removedIds: readonly string[]): void {
    const affected = new Set<Peer>();
    for (const id of removedIds) for (const c of this.store.childrenOf(task, id)) affected.add(c);
    for (const child of affected) {
      for (const id of removedIds) this.store.dropCandidate(child, id);
      if (!child.isActive || !child.hasStream) continue;
      if (!this.hasFeed(task, child) && this.mustFetch(child, task)) {
        this.backToSource(child, task, "the peers feeding this task are gone");
        continue;
      }
      const parents = this.select(child, task);
      if (parents.length > 0) this.sendNormal(child, task, parents);
    }
  }

  // waitedMs: since the peer started waiting (read before the decision
  // cleared it).
  logDecision(peer: Peer, decision: Decision, why: string, waitedMs: number): void {
    if (decision === "wait" || decision === "wait_seed") return;
    this.metrics?.decided(decision, waitedMs / 1000);
    this.log.debug({ taskId: peer.taskId, peerId: peer.id, hostId: peer.hostId, decision, why }, "rescheduled waiting peer");
  }
}
