import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Logger } from "../../common/logger.js";
import { rendezvousOrder } from "../../common/rendezvous.js";
import { createRpcTransport, fromConnectError, schedulerv1 } from "../../protocol/index.js";
import { peerIdOf } from "./peer-id.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import type { TransportTls } from "../../protocol/transport.js";
import type { PieceBatchOptions } from "./piece-report-batcher.js";
import { FailoverSession, isSchedulerFault, type AnnounceSession, type SessionHandlers, type SessionHost } from "./announce-session.js";
import { openAnnounceStream, type OpenStream, type SchedulerClient } from "./announce-stream.js";

export type { AnnounceSession, SessionHandlers } from "./announce-session.js";

export interface SchedulerLinkOptions {
  addresses: readonly string[];
  // This host; its API port is set by start().
  host: schedulerv1.Host;
  logger: Logger;
  connectTimeoutMs: number;
  // A scheduler that has not taken a registration within this long is
  // taken for hung: the task goes to the next one (default 1 s).
  registerTimeoutMs?: number;
  intervalMs: number;
  // Finished tasks this daemon can serve, re-announced when a scheduler meets
  // us for the first time (its restart lost them).
  cachedTasks: () => schedulerv1.CachedTask[];
  // Upload counters sent with every keep-alive (load for parent choice,
  // traffic for the manager's console).
  uploadStats?: () => { concurrentUploads: number; uploadBytesTotal: number };
  // Piece-report coalescing (default PIECE_BATCH_DEFAULTS); false sends one
  // message per piece.
  pieceBatch?: PieceBatchOptions | false;
  // With TLS: mutual TLS to schedulers only, each certificate of the
  // scheduler role and naming the configured address.
  tls?: TlsIdentity | undefined;
}

interface Endpoint {
  address: string;
  client: SchedulerClient;
  healthy: boolean;
  // Last failure already logged: warn once per outage, not per retry.
  warned: boolean;
  // The scheduler said it takes batched piece reports (older ones do not).
  batching: boolean;
  // The scheduler acknowledges registrations (AnnounceHostResponse.register_ack).
  registerAck: boolean;
  // While down: the next probe, sooner than the keep-alive interval so a
  // restarted scheduler gets its swarm back within about a second.
  probe: NodeJS.Timeout | undefined;
  probeMs: number;
}

const FIRST_PROBE_MS = 250;
// Probes of a down scheduler back off to this: a restarted scheduler is back
// in every daemon's view within about a second, so a download starting then
// does not find it alone while its swarm is still on the next scheduler.
const MAX_PROBE_MS = 1_000;
const DEFAULT_REGISTER_TIMEOUT_MS = 1_000;

// Everything the daemon says to its schedulers: host keep-alive, cached-task
// announcements, and one announce session per task download. A task goes
// to the first healthy scheduler in its rendezvous order of the scheduler
// list, so every peer of a task meets the same scheduler; the link keeps a
// health view of all of them, and moves a download's session when its
// scheduler dies, hangs or comes back (docs/decisions/scheduler-failover.md).
export class SchedulerLink implements SessionHost {
  private endpoints: Endpoint[];
  private timer: NodeJS.Timeout | undefined;
  private left = false;
  private readonly log: Logger;
  private readonly sessions = new Set<FailoverSession>();

  constructor(private readonly o: SchedulerLinkOptions) {
    this.log = o.logger.child({ component: "scheduler-link" });
    this.endpoints = o.addresses.map((address) => this.endpoint(address));
  }

  private endpoint(address: string): Endpoint {
    return {
      address,
      client: createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${address}`, this.transportTls())),
      healthy: false,
      warned: false,
      batching: false,
      registerAck: false,
      probe: undefined,
      probeMs: FIRST_PROBE_MS,
    };
  }

  private transportTls(): TransportTls | undefined {
    return this.o.tls ? { identity: this.o.tls, server: { roles: ["scheduler"], verifyHostname: true } } : undefined;
  }

  get addresses(): string[] {
    return this.endpoints.map((e) => e.address);
  }

  // Some scheduler answered its last keep-alive (readiness).
  get reachable(): boolean {
    return this.endpoints.some((e) => e.healthy);
  }

  // The schedulers as this daemon sees them now.
  health(): { address: string; healthy: boolean }[] {
    return this.endpoints.map((e) => ({ address: e.address, healthy: e.healthy }));
  }

  // A new scheduler list (from the manager): schedulers that stay keep their
  // connection and state; new ones are announced to at once, and downloads
  // whose task now belongs elsewhere move there.
  async setAddresses(addresses: readonly string[]): Promise<void> {
    if (addresses.length === 0) return;
    const old = new Map(this.endpoints.map((e) => [e.address, e]));
    this.endpoints = addresses.map((a) => old.get(a) ?? this.endpoint(a));
    for (const e of old.values()) if (!this.endpoints.includes(e)) this.stopProbing(e);
    await Promise.all(this.endpoints.filter((e) => !e.healthy).map((e) => this.announce(e)));
    this.rebalance();
  }

  // `apiPort`: the daemon's API port, known once that server is bound (the
  // scheduler triggers seed downloads through it).
  async start(apiPort?: number): Promise<void> {
    if (apiPort !== undefined) this.o.host.apiPort = apiPort;
    await this.announceAll();
    this.timer = setInterval(() => void this.announceAll(), this.o.intervalMs);
    this.timer.unref();
  }

  private async announceAll(): Promise<void> {
    if (this.left) return;
    await Promise.all(this.endpoints.map((e) => this.announce(e)));
  }

  // The keep-alive (AnnounceHost); also the probe of a scheduler that is down.
  private async announce(e: Endpoint): Promise<boolean> {
    try {
      const stats = this.o.uploadStats?.();
      if (stats) {
        this.o.host.concurrentUploads = stats.concurrentUploads;
        this.o.host.uploadBytesTotal = BigInt(stats.uploadBytesTotal);
      }
      const res = await e.client.announceHost(
        { host: this.o.host, intervalSeconds: Math.ceil(this.o.intervalMs / 1000) },
        { signal: AbortSignal.timeout(this.o.connectTimeoutMs) },
      );
      e.batching = res.batchedPieceReports;
      e.registerAck = res.registerAck;
      if (res.newHost) await this.announceCachedTo(e);
      if (!e.healthy) this.up(e);
      return true;
    } catch (err) {
      this.down(e, err);
      return false;
    }
  }

  private async announceCachedTo(e: Endpoint): Promise<void> {
    const tasks = this.o.cachedTasks();
    if (tasks.length === 0) return;
    await e.client.announceCachedTasks({ hostId: this.o.host.id, tasks }, { signal: AbortSignal.timeout(this.o.connectTimeoutMs * 3) });
    this.log.info({ scheduler: e.address, tasks: tasks.length }, "announced cached tasks");
  }

  private up(e: Endpoint): void {
    this.log.info({ scheduler: e.address }, "scheduler reachable");
    e.healthy = true;
    e.warned = false;
    this.stopProbing(e);
    // Downloads whose task belongs here (again) come back, and bring the
    // pieces they hold: a restarted scheduler rebuilds its swarms from them.
    this.rebalance();
  }

  // The scheduler failed a keep-alive, a registration deadline or a stream:
  // downloads on it move to the next scheduler of their ring at once.
  private down(e: Endpoint, err: unknown): void {
    if (!e.warned) this.log.warn({ scheduler: e.address, err: fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE").message }, "scheduler unreachable");
    e.warned = true;
    const was = e.healthy;
    e.healthy = false;
    if (!this.left && !e.probe && this.endpoints.includes(e)) {
      e.probe = setTimeout(() => {
        e.probe = undefined;
        e.probeMs = Math.min(e.probeMs * 2, MAX_PROBE_MS, this.o.intervalMs);
        void this.announce(e);
      }, e.probeMs);
      e.probe.unref();
    }
    if (was) for (const s of this.sessions) if (s.scheduler === e.address) void s.move();
  }

  private stopProbing(e: Endpoint): void {
    if (e.probe) clearTimeout(e.probe);
    e.probe = undefined;
    e.probeMs = FIRST_PROBE_MS;
  }

  // Every session not on its task's first healthy scheduler moves there.
  private rebalance(): void {
    for (const s of this.sessions) if (s.scheduler !== this.preferred(s.taskId)) void s.move();
  }
  // Tells schedulers about one more finished task right away, except the
  // one the download's own stream already told (`told`): each scheduler
  // hears of a finished peer once.
  announceCached(task: schedulerv1.CachedTask, told?: string): void {
    for (const e of this.endpoints) {
      if (!e.healthy || e.address === told) continue;
      e.client.announceCachedTasks({ hostId: this.o.host.id, tasks: [task] }, { signal: AbortSignal.timeout(this.o.connectTimeoutMs) }).catch(() => undefined);
    }
  }

  // Tells every scheduler that this host no longer holds the tasks (they
  // were evicted or deleted here). Bounded by the connect timeout: a
  // scheduler that does not answer learns it from its children's failed
  // piece requests instead.
  async leaveTasks(taskIds: readonly string[]): Promise<void> {
    if (taskIds.length === 0) return;
    const left = taskIds.map((taskId) => create(schedulerv1.LeftTaskSchema, { taskId, peerId: peerIdOf(this.o.host.id, taskId) }));
    await Promise.all(
      this.endpoints
        .filter((e) => e.healthy)
        .map((e) =>
          e.client
            .leaveTasks({ hostId: this.o.host.id, tasks: left }, { signal: AbortSignal.timeout(this.o.connectTimeoutMs) })
            .catch((err: unknown) =>
              this.log.warn(
                { scheduler: e.address, tasks: taskIds.length, err: fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE").message },
                "cannot tell the scheduler about removed tasks",
              ),
            ),
        ),
    );
  }

  // Healthy schedulers first, each group in the task's rendezvous order.
  private ordered(taskId: string): Endpoint[] {
    const all = rendezvousOrder(taskId, this.endpoints, (e) => e.address, { rankBytes: 4 });
    return [...all.filter((e) => e.healthy), ...all.filter((e) => !e.healthy)];
  }

  // One unary call about a task, on the scheduler its announce sessions go
  // to (the one that knows it); the next one if that fails to answer.
  async ask<T>(taskId: string, fn: (client: SchedulerClient, hostId: string) => Promise<T>): Promise<T> {
    let last: unknown = new Error("no scheduler configured");
    for (const e of this.ordered(taskId)) {
      try {
        return await fn(e.client, this.o.host.id);
      } catch (err) {
        last = err;
        if (!(err instanceof ConnectError) || !isSchedulerFault(err)) break;
      }
    }
    throw fromConnectError(last, "DF_ERR_SCHEDULER_UNAVAILABLE");
  }

  preferred(taskId: string): string | undefined {
    const first = this.ordered(taskId)[0];
    return first?.healthy ? first.address : undefined;
  }

  // Opens the announce session for one task, or returns undefined when no
  // scheduler takes it (the caller then goes to the origin).
  // `headers`: the W3C trace context of the download (tracing on).
  async open(taskId: string, peerId: string, handlers: SessionHandlers, headers: Record<string, string> = {}): Promise<AnnounceSession | undefined> {
    const s = new FailoverSession(taskId, peerId, headers, handlers, this);
    let stream: OpenStream | undefined;
    try {
      stream = await this.attach(s);
    } catch {
      return undefined;
    }
    if (!stream) return undefined;
    s.adopt(stream);
    this.sessions.add(s);
    return s;
  }

  // A stream for the session on the first scheduler that takes its
  // registration; a scheduler that fails to (down, hung) is marked down
  // and the next one tried. Throws when a scheduler refuses it.
  async attach(s: FailoverSession): Promise<OpenStream | undefined> {
    for (const e of this.ordered(s.taskId)) {
      if (this.left) return undefined;
      if (!e.healthy && !(await this.announce(e))) continue;
      for (let again = true; ; again = false) {
        try {
          return await this.openOn(e, s);
        } catch (err) {
          const ce = ConnectError.from(err);
          // The scheduler restarted between keep-alives: announce the host, once.
          if (again && ce.code === Code.FailedPrecondition && (await this.announce(e))) continue;
          if (!isSchedulerFault(ce)) throw fromConnectError(ce, "DF_ERR_SCHEDULER_UNAVAILABLE");
          this.down(e, ce);
          break;
        }
      }
    }
    return undefined;
  }

  private openOn(e: Endpoint, s: FailoverSession): Promise<OpenStream> {
    return openAnnounceStream(e, {
      ids: { hostId: this.o.host.id, taskId: s.taskId, peerId: s.peerId },
      register: s.registration(),
      onResponse: (r) => s.answered(r),
      headers: s.headers,
      registerTimeoutMs: this.o.registerTimeoutMs ?? DEFAULT_REGISTER_TIMEOUT_MS,
      pieceBatch: this.o.pieceBatch,
    });
  }

  streamEnded(s: FailoverSession, address: string, fault: boolean): void {
    const e = this.endpoints.find((x) => x.address === address);
    if (fault && e) this.down(e, new ConnectError(`the announce stream to ${address} broke`, Code.Unavailable));
    void s.move();
  }

  forget(s: FailoverSession): void {
    this.sessions.delete(s);
  }

  // Tells every scheduler this host is going (LeaveHost): they stop offering
  // it as a parent and give its children other parents. No keep-alive
  // follows (it would announce the host again). Idempotent.
  async leave(): Promise<void> {
    if (this.left) return;
    this.left = true;
    if (this.timer) clearInterval(this.timer);
    for (const e of this.endpoints) this.stopProbing(e);
    await Promise.all(
      this.endpoints
        .filter((e) => e.healthy)
        .map((e) =>
          e.client.leaveHost({ hostId: this.o.host.id }, { signal: AbortSignal.timeout(2_000) }).then(
            () => this.log.info({ scheduler: e.address }, "left the scheduler"),
            (err: unknown) =>
              this.log.warn(
                { scheduler: e.address, err: fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE").message },
                "could not tell the scheduler this host is leaving",
              ),
          ),
        ),
    );
  }

  async close(): Promise<void> {
    await this.leave();
  }
}
