import { create } from "@bufbuild/protobuf";
import { rendezvousPick } from "../../common/rendezvous.js";
import { SpanKind, startSpan, traceHeaders } from "../../common/trace.js";
import { daemonv1, type Download } from "../../protocol/index.js";
import type { DaemonClients } from "../daemon-clients.js";
import type { Host } from "../resources/host-manager.js";
import type { SeedTriggerState, Task } from "../resources/task-manager.js";
import type { Peer } from "../resources/peer-manager.js";
import type { SchedulingEngine } from "./engine.js";

const SEED_HASH = { separator: "\0" } as const;
const hostName = (h: Host): string => h.id;

// Rendezvous hashing (common/rendezvous.ts): every scheduler picks the same
// seed for a task, and only tasks of a departed seed move elsewhere.
export function pickSeedHost(taskId: string, seeds: readonly Host[]): Host | undefined {
  return rendezvousPick(taskId, seeds, hostName, SEED_HASH);
}

// headers: the W3C trace context of the registration that caused it.
export type TriggerFn = (host: Host, download: Download, taskId: string, headers?: Record<string, string>) => Promise<void>;

// Runs `fn` after `ms` without keeping the process alive. Injected so a test
// fires the delayed seed copy itself instead of racing a wall-clock sleep.
export type DelayFn = (fn: () => void, ms: number) => void;
const unrefDelay: DelayFn = (fn, ms) => {
  setTimeout(fn, ms).unref();
};

// Calls TriggerTask on a seed daemon's API, through the scheduler's pool of
// daemon clients.
export class SeedTriggerClient {
  constructor(
    private readonly clients: DaemonClients,
    private readonly timeoutMs = 10_000,
  ) {}

  readonly trigger: TriggerFn = async (host, download, taskId, headers) => {
    // Only to a seed-peer certificate (with TLS): the request carries the
    // requester's credentials.
    await this.clients
      .get(host, "trigger")
      .triggerTask(create(daemonv1.TriggerTaskRequestSchema, { download, taskId }), { timeoutMs: this.timeoutMs, ...(headers ? { headers } : {}) });
  };
}

// When a task gets a seed peer: the trigger (which seed host, when again)
// and whether one is on its way or at work. Part of the engine's decisions;
// reads the engine's current config (the manager may replace it).
export class SeedTriggers {
  constructor(
    private readonly engine: SchedulingEngine,
    private readonly trigger: TriggerFn,
    private readonly delay: DelayFn = unrefDelay,
  ) {}

  // A peer finished a task: with peer-first cold starts, the seed peer now
  // keeps a copy (nodes come and go; the seed is the lasting cache).
  // The copy waits `seedCopyDelay`, so it does not compete with the node
  // that is still unpacking what it just pulled.
  onPeerFinished(task: Task): void {
    const { config, store } = this.engine;
    if (config.coldStart !== "peer" || task.seedTrigger) return;
    this.delay(() => {
      if (!this.engine.isClosed && store.tasks.get(task.id) === task) this.maybeTrigger(task, this.engine.now());
    }, config.seedCopyDelay);
  }

  // A seed peer registering for a task that peers hold in part while nobody
  // feeds it (the seed fetching it died, and this is the next seed of the
  // ring): it gets those peers as parents first, then (caughtUp) the origin
  // for what none of them holds. False when there is nothing to take.
  takeOver(peer: Peer, task: Task): boolean {
    if (peer.takingOver || peer.finishedPieces > 0) return false;
    const holders = this.engine.select(peer, task).filter((p) => p.finishedPieces > 0);
    if (holders.length === 0) return false;
    peer.takingOver = true;
    this.engine.log.info({ taskId: task.id, peerId: peer.id, holders: holders.length }, "seed peer takes the task over from the peers that hold it");
    this.engine.sendNormal(peer, task, holders);
    return true;
  }

  // The seed taking over stored its first piece from the peers: it knows
  // what they hold by now (their availability comes before any piece), so it
  // fetches what none holds from the origin at once while it keeps taking
  // the rest from them.
  caughtUp(peer: Peer, task: Task): void {
    if (!peer.takingOver || peer.state !== "running") return;
    peer.takingOver = false;
    this.engine.backToSource(peer, task, "taking over: from the origin what no peer holds", true);
  }

  // The seed host `hostId` is gone: a task it was triggered for gets its
  // next feed now (the next seed of its ring, or with none a peer to the
  // origin), not when its peers stall.
  hostGone(hostId: string): void {
    const e = this.engine;
    for (const task of e.store.tasks.values()) {
      if (task.seedTrigger?.hostId !== hostId) continue;
      for (const p of e.store.taskPeers(task)) {
        if (!p.isActive || !p.hasStream || e.hasFeed(task, p)) continue;
        if (e.mustFetch(p, task)) e.backToSource(p, task, "the seed peer fetching this task is gone");
        break;
      }
    }
  }

  // A seed peer is on its way (recent trigger) or already working on the task.
  active(task: Task, now: number): boolean {
    const t = task.seedTrigger;
    if (t && !t.failed && this.engine.liveHost(t.hostId) && now - t.at < 2 * this.engine.config.seedWait) return true;
    return this.present(task);
  }

  private present(task: Task): boolean {
    for (const p of task.seedPeers) {
      if ((p.isActive || p.state === "succeeded") && this.engine.liveHost(p.hostId)?.isSeed) return true;
    }
    return false;
  }

  // One trigger per task; again only once the last one is stale (2 x seedWait)
  // with no seed peer to show for it, or its seed host is gone.
  private due(task: Task, now: number): boolean {
    if (!task.download || this.present(task)) return false;
    const t = task.seedTrigger;
    return !t || !this.engine.liveHost(t.hostId) || now - t.at >= 2 * this.engine.config.seedWait;
  }

  maybeTrigger(task: Task, now: number): void {
    if (!task.download || !this.due(task, now)) return;
    // An imported task: a seed can only copy it from a holder.
    if (task.cacheDigest !== undefined && task.succeeded.size === 0) return;
    this.triggerNext(task, now, new Set());
  }

  // Triggers the task's seed: the first live seed host of its ring not in
  // `failed` (hosts whose trigger just failed: the next one is tried at once,
  // so a dead seed costs its peers one connection attempt, not a trip to the
  // origin).
  private triggerNext(task: Task, now: number, failed: ReadonlySet<string>): void {
    const { store, config, log } = this.engine;
    const seed = pickSeedHost(
      task.id,
      store.hosts.liveSeeds(now, config.hostTimeout).filter((h) => !failed.has(h.id)),
    );
    if (!seed || !task.download) return;
    const state: SeedTriggerState = { hostId: seed.id, at: now, failed: false };
    task.seedTrigger = state;
    log.info({ taskId: task.id, seedHostId: seed.id }, "triggering seed peer");
    const span = startSpan("TriggerSeed", {
      kind: SpanKind.CLIENT,
      parent: task.trace,
      attributes: { "damselfly.task_id": task.id, "damselfly.seed_host_id": seed.id },
    });
    this.trigger(seed, task.download, task.id, traceHeaders(span)).then(
      () => {
        span.end();
        log.debug({ taskId: task.id, seedHostId: seed.id }, "seed peer triggered");
      },
      (err: unknown) => {
        span.setError(err).end();
        state.failed = true;
        log.warn({ taskId: task.id, seedHostId: seed.id, err: err instanceof Error ? err.message : String(err) }, "seed trigger failed");
        // The scheduler checks the host itself (it may be dying).
        this.engine.probes?.suspect(seed.id, 2);
        if (!this.engine.isClosed && task.seedTrigger === state && store.tasks.get(task.id) === task) {
          this.triggerNext(task, this.engine.now(), new Set([...failed, seed.id]));
        }
        this.engine.wake(task);
      },
    );
  }
}
