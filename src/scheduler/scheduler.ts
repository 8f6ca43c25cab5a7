import { formatHostPort, type HostPort } from "../common/address.js";
import type { Logger } from "../common/logger.js";
import type { SchedulerConfig } from "../common/schemas.js";
import { createRpcServer, schedulerv1, type RpcServer } from "../protocol/index.js";
import { PeerCounters } from "./peer-counters.js";
import { ResourceStore } from "./resources/resource-store.js";
import { FAILURE_WINDOW_MS, SchedulingEngine } from "./scheduling/engine.js";
import { PeerEvents } from "./scheduling/peer-events.js";
import { SeedTriggerClient, type DelayFn, type TriggerFn } from "./scheduling/seed-trigger.js";
import type { PeerState } from "./resources/peer-state.js";
import { DaemonClients } from "./daemon-clients.js";
import { Replicator } from "./replicas.js";
import { createSchedulerService, fastRoutes } from "./service.js";
import { hostNotAnnounced } from "./validate.js";
import { ManagerLink, type DynamicConfig } from "./manager-link.js";
import { Preheater } from "./preheat.js";
import { TaskJobs } from "./task-jobs.js";
import { Health } from "../common/health.js";
import { MetricsServer } from "../common/metrics-server.js";
import { SchedulerMetrics } from "./metrics.js";
import { checkBind, defaultedListen, loadTlsIdentity } from "../common/tls/bind-policy.js";
import { schedulerSchema } from "../common/schemas.js";
import type { TlsIdentity } from "../common/tls/identity.js";
import { parseHostPort } from "../common/address.js";
import { RegistrantLimits } from "./limits.js";
import { encodeRecord, signGrant } from "../protocol/trust.js";
import type { GrantFn } from "./scheduling/engine.js";
import { connectProbe, type ProbeFn } from "./scheduling/host-probe.js";

// Grants signed with the certificate current at the time (rotation-safe).
function grantSigner(tls: TlsIdentity): GrantFn {
  return (taskId, peerId, fingerprint) => encodeRecord(signGrant(tls.current(), taskId, peerId, fingerprint));
}

const CLOSE_TIMEOUT_MS = 3_000;
// How often the cumulative "peer summary" line is logged (when anything changed).
const SUMMARY_EVERY_MS = 10_000;

export interface SchedulerOptions {
  config: SchedulerConfig;
  logger: Logger;
  // Replaces the TriggerTask RPC to seed daemons (tests).
  trigger?: TriggerFn;
  // Replaces the timer of the seed's copy after seedCopyDelay (tests).
  delay?: DelayFn;
  // Replaces the check of a host its children report failing (tests).
  probe?: ProbeFn;
  // DAMSELFLY_CLUSTER_TOKEN (see protocol/cluster-token.ts).
  clusterToken?: string;
}

export interface PeerSnapshot {
  state: PeerState;
  // It said back_to_source_started (a parent from its first byte).
  sourceStarted: boolean;
  finishedPieces: number;
  streamOpen: boolean;
}

// The scheduler process: in-memory state, the Connect service, and coarse
// timers (host GC, waiting-peer re-evaluation, the peer summary line).
export class Scheduler {
  private readonly config: SchedulerConfig;
  private readonly log: Logger;
  private readonly store: ResourceStore;
  private readonly engine: SchedulingEngine;
  private readonly events: PeerEvents;
  // The one pool of clients to daemon APIs (seed triggers, preheats, task jobs).
  private readonly daemonClients: DaemonClients;
  // Caps per registrant (limits.ts).
  private readonly limits: RegistrantLimits;
  private readonly preheater: Preheater;
  private readonly taskJobs: TaskJobs;
  private readonly clusterToken: string | undefined;
  private managerLink: ManagerLink | undefined;
  readonly metrics: SchedulerMetrics;
  readonly health = new Health();
  private readonly counters: PeerCounters;
  private server: RpcServer | undefined;
  private metricsServer: MetricsServer | undefined;
  private timers: NodeJS.Timeout[] = [];
  // Mutual TLS on the listener and every link, with --tls-*.
  readonly tls: TlsIdentity | undefined;

  constructor(opts: SchedulerOptions) {
    this.config = opts.config;
    this.log = opts.logger.child({ component: "scheduler" });
    this.tls = loadTlsIdentity(this.config.tls, this.log);
    this.daemonClients = new DaemonClients(this.tls);
    this.store = new ResourceStore({ candidateParentLimit: this.config.candidateParentLimit });
    this.limits = new RegistrantLimits(this.store, () => this.engine.config.limits);
    this.store.hosts.onRemove((host) => this.daemonClients.forget(host));
    this.metrics = new SchedulerMetrics(this.store);
    this.counters = new PeerCounters(this.metrics);
    this.engine = new SchedulingEngine({
      config: this.config,
      logger: this.log,
      store: this.store,
      trigger: opts.trigger ?? new SeedTriggerClient(this.daemonClients).trigger,
      delay: opts.delay,
      metrics: this.metrics,
      ...(this.tls ? { grant: grantSigner(this.tls) } : {}),
    });
    this.health.addCheck("scheduler", () => (this.server ? undefined : "not serving"));
    this.events = new PeerEvents(this.engine, opts.probe ?? connectProbe);
    this.clusterToken = opts.clusterToken;
    this.preheater = new Preheater({ config: this.config, logger: this.log, store: this.store, clients: this.daemonClients, now: () => this.engine.now() });
    this.taskJobs = new TaskJobs({
      config: this.config,
      logger: this.log,
      store: this.store,
      events: this.events,
      clients: this.daemonClients,
      now: () => this.engine.now(),
      clusterToken: opts.clusterToken,
    });
  }

  // The cluster's dynamic settings from the manager over the static ones;
  // keys the manager leaves unset fall back to this scheduler's own config.
  applyDynamicConfig(dynamic: DynamicConfig): void {
    const next = Object.freeze({ ...this.config, ...dynamic });
    this.engine.config = next;
    this.store.tasks.candidateLimit = next.candidateParentLimit;
  }

  // A peer as the scheduler holds it, undefined once it is gone: lets a test
  // await the effect of a message instead of sleeping on it.
  peerSnapshot(peerId: string): PeerSnapshot | undefined {
    const p = this.store.peers.get(peerId);
    return p && { state: p.state, sourceStarted: p.sourceStarted, finishedPieces: p.finishedPieces, streamOpen: p.queue !== undefined };
  }

  get effectiveConfig(): SchedulerConfig {
    return this.engine.config;
  }

  get address(): HostPort {
    if (!this.server) throw new Error("scheduler not started");
    return this.server.address;
  }

  // With --metrics-listen.
  get metricsAddress(): HostPort | undefined {
    return this.metricsServer?.address;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const deps = {
      config: this.config,
      logger: this.log,
      store: this.store,
      engine: this.engine,
      events: this.events,
      preheater: this.preheater,
      replicator: new Replicator({
        config: this.config,
        logger: this.log,
        store: this.store,
        clients: this.daemonClients,
        now: () => this.engine.now(),
        ...(this.tls ? { grant: grantSigner(this.tls) } : {}),
      }),
      taskJobs: this.taskJobs,
      clusterToken: this.clusterToken,
      counters: this.counters,
      limits: this.limits,
    };
    const service = createSchedulerService(deps);
    const listen = defaultedListen(this.config.server.listen, schedulerSchema.server.listen.default, this.tls !== undefined, this.config.insecure);
    checkBind("scheduler", parseHostPort(listen).host, this.tls !== undefined, this.config.insecure, this.log);
    if (this.config.metrics.listen) {
      this.metricsServer = new MetricsServer({
        listen: this.config.metrics.listen,
        registry: this.metrics.registry,
        health: this.health,
        logger: this.log,
        tls: this.tls,
        insecure: this.config.insecure,
      });
      await this.metricsServer.start();
    }
    this.server = await createRpcServer(listen, (router) => router.service(schedulerv1.SchedulerService, service), fastRoutes(deps), {
      health: this.health,
      tls: this.tls,
      streamsPerConnection: this.config.limits.streamsPerConnection,
      connectionsPerAddress: this.config.limits.connectionsPerAddress,
    });
    const gcEvery = Math.max(50, Math.min(5_000, Math.floor(this.config.hostTimeout / 3)));
    const tickEvery = Math.max(50, Math.min(500, Math.floor(this.config.seedWait / 4)));
    this.timers = [
      setInterval(() => this.gc(), gcEvery),
      setInterval(() => this.engine.tick(), tickEvery),
      setInterval(() => this.counters.log(this.log), SUMMARY_EVERY_MS),
    ];
    for (const t of this.timers) t.unref();
    this.log.info(
      { listen: this.server.address, ...(this.metricsServer ? { metrics: formatHostPort(this.metricsServer.address) } : {}) },
      "scheduler listening",
    );
    if (this.config.manager.url) {
      this.managerLink = new ManagerLink({
        config: this.config,
        logger: this.log,
        store: this.store,
        address: this.server.address,
        apply: (d) => this.applyDynamicConfig(d),
        clusterToken: this.clusterToken,
        tls: this.tls,
      });
      this.managerLink.start();
    }
  }

  async close(): Promise<void> {
    this.tls?.close();
    await this.managerLink?.close();
    this.managerLink = undefined;
    if (this.timers.length > 0) this.counters.log(this.log, true);
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.engine.close();
    for (const p of this.store.peers.values()) {
      p.queue?.close();
      p.queue = undefined;
    }
    const server = this.server;
    this.server = undefined;
    await this.metricsServer?.close();
    this.metricsServer = undefined;
    if (!server) return;
    // A client that never reads its responses keeps its HTTP/2 session open;
    // do not let it hold close() forever.
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), CLOSE_TIMEOUT_MS);
      timer.unref();
    });
    const done = await Promise.race([server.close().then(() => true), slow]);
    clearTimeout(timer);
    if (!done) this.log.warn({ timeoutMs: CLOSE_TIMEOUT_MS }, "scheduler server did not close in time: clients still connected");
  }

  // Drops silent hosts with their peers, then tasks nobody holds any more.
  gc(): void {
    const now = this.engine.now();
    for (const host of this.store.hosts.expired(now, this.config.hostTimeout)) {
      const removed = this.events.removeHost(host, hostNotAnnounced(host.id));
      this.log.warn({ hostId: host.id, peers: removed.length }, "host timed out");
    }
    for (const task of this.store.tasks.values()) {
      if (task.peers.size === 0 && !task.recentFailure(now, FAILURE_WINDOW_MS)) this.store.tasks.delete(task.id);
    }
  }
}
