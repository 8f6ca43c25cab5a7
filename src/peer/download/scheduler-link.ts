import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { AsyncQueue } from "../../common/async-queue.js";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { rendezvousOrder } from "../../common/rendezvous.js";
import { createRpcTransport, fromConnectError, schedulerv1 } from "../../protocol/index.js";
import { peerIdOf } from "./peer-id.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import type { TransportTls } from "../../protocol/transport.js";
import { PieceReportBatcher, type PieceBatchOptions } from "./piece-report-batcher.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];
type SchedulerClient = Client<typeof schedulerv1.SchedulerService>;

export interface AnnounceSession {
  // The scheduler's address.
  readonly scheduler: string;
  send(req: Req): void;
  close(): void;
}

export interface SchedulerLinkOptions {
  addresses: readonly string[];
  // This host; its API port is set by start().
  host: schedulerv1.Host;
  logger: Logger;
  connectTimeoutMs: number;
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
}

// Everything the daemon says to its schedulers: host keep-alive, cached-task
// announcements, and one announce stream per task download. A task sticks to
// one scheduler chosen by rendezvous hashing of its ID, so every peer of a
// task meets the same scheduler.
export class SchedulerLink {
  private endpoints: Endpoint[];
  private timer: NodeJS.Timeout | undefined;
  private left = false;
  private readonly log: Logger;

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

  // A new scheduler list (from the manager): schedulers that stay keep their
  // connection and state; new ones are announced to at once. Streams already
  // open stay on their scheduler until they end.
  async setAddresses(addresses: readonly string[]): Promise<void> {
    if (addresses.length === 0) return;
    const old = new Map(this.endpoints.map((e) => [e.address, e]));
    this.endpoints = addresses.map((a) => old.get(a) ?? this.endpoint(a));
    await Promise.all(this.endpoints.filter((e) => !e.healthy).map((e) => this.announce(e)));
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
      if (!e.healthy) this.log.info({ scheduler: e.address }, "scheduler reachable");
      e.healthy = true;
      e.warned = false;
      e.batching = res.batchedPieceReports;
      if (res.newHost) {
        const tasks = this.o.cachedTasks();
        if (tasks.length > 0) {
          await e.client.announceCachedTasks({ hostId: this.o.host.id, tasks }, { signal: AbortSignal.timeout(this.o.connectTimeoutMs * 3) });
          this.log.info({ scheduler: e.address, tasks: tasks.length }, "announced cached tasks");
        }
      }
      return true;
    } catch (err) {
      if (!e.warned) this.log.warn({ scheduler: e.address, err: fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE").message }, "scheduler unreachable");
      e.healthy = false;
      e.warned = true;
      return false;
    }
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

  private ordered(taskId: string): Endpoint[] {
    return rendezvousOrder(taskId, this.endpoints, (e) => e.address, { rankBytes: 4 });
  }

  // Opens the announce stream for one task, or returns undefined when no
  // scheduler can be reached (the caller then goes to the origin).
  // `headers`: the W3C trace context of the download (tracing on).
  async open(
    taskId: string,
    peerId: string,
    onResponse: (r: schedulerv1.AnnouncePeerResponse) => void,
    onLost: (e: DamselflyError) => void,
    headers: Record<string, string> = {},
  ): Promise<AnnounceSession | undefined> {
    for (const e of this.ordered(taskId)) {
      if (!e.healthy && !(await this.announce(e))) continue;
      return this.stream(e, taskId, peerId, onResponse, onLost, headers);
    }
    return undefined;
  }

  private stream(
    e: Endpoint,
    taskId: string,
    peerId: string,
    onResponse: (r: schedulerv1.AnnouncePeerResponse) => void,
    onLost: (e: DamselflyError) => void,
    headers: Record<string, string>,
  ): AnnounceSession {
    const queue = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
    const abort = new AbortController();
    let closed = false;
    (async () => {
      try {
        for await (const res of e.client.announcePeer(queue, { signal: abort.signal, headers })) onResponse(res);
        if (!closed) onLost(new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", `scheduler ${e.address} ended the announce stream`));
      } catch (err) {
        if (!closed) onLost(fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE"));
      }
    })();
    const hostId = this.o.host.id;
    const push = (request: Req) => {
      queue.push(create(schedulerv1.AnnouncePeerRequestSchema, { hostId, taskId, peerId, request }));
    };
    const batcher = e.batching && this.o.pieceBatch !== false ? new PieceReportBatcher(push, this.o.pieceBatch) : undefined;
    return {
      scheduler: e.address,
      send: (request) => {
        if (closed) return;
        if (batcher) batcher.send(request);
        else push(request);
      },
      close: () => {
        if (closed) return;
        batcher?.close();
        closed = true;
        queue.close();
        // Let the last messages (peer finished) flush before the call ends.
        setTimeout(() => abort.abort(), 2_000).unref();
      },
    };
  }

  // Tells every scheduler this host is going (LeaveHost): they stop offering
  // it as a parent and give its children other parents. No keep-alive
  // follows (it would announce the host again). Idempotent.
  async leave(): Promise<void> {
    if (this.left) return;
    this.left = true;
    if (this.timer) clearInterval(this.timer);
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
