import { hostname as osHostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { advertisedIp, type HostPort } from "../common/address.js";
import type { Logger } from "../common/logger.js";
import type { SchedulerConfig } from "../common/schemas.js";
import { pickSet, SCHEDULER_CLUSTER_KEYS, type SchedulerClusterKey } from "../common/cluster-config.js";
import { clusterTokenHeaders, createManagerTransport, fromConnectError, managerv1 } from "../protocol/index.js";
import type { ResourceStore } from "./resources/resource-store.js";
import type { TlsIdentity } from "../common/tls/identity.js";

// The cluster's dynamic settings for schedulers (common/cluster-config.ts).
export type DynamicConfig = { -readonly [K in SchedulerClusterKey]?: SchedulerConfig[K] };

export interface ManagerLinkOptions {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  address: HostPort;
  // Called with the cluster's dynamic config whenever it changes.
  apply(dynamic: DynamicConfig): void;
  clusterToken?: string | undefined;
  // With TLS: mutual TLS to a manager certificate that names the URL's host,
  // so the cluster token goes to the manager and no one else.
  tls?: TlsIdentity | undefined;
}

// Registers the scheduler with the manager and keeps it alive. Each answer
// carries the cluster's dynamic config, so an edit in the manager reaches
// the scheduler within one interval. The manager is optional: while it is
// unreachable the scheduler keeps scheduling with what it has.
export class ManagerLink {
  private readonly client: Client<typeof managerv1.ManagerService>;
  private timer: NodeJS.Timeout | undefined;
  private last = "";
  private failing = false;
  private inFlight: Promise<void> | undefined;

  constructor(private readonly opts: ManagerLinkOptions) {
    const tls = opts.tls ? { identity: opts.tls, server: { roles: ["manager" as const], verifyHostname: true } } : undefined;
    this.client = createClient(managerv1.ManagerService, createManagerTransport(opts.config.manager.url, tls));
  }

  start(): void {
    this.inFlight = this.keepAlive();
    this.timer = setInterval(() => {
      if (!this.inFlight) this.inFlight = this.keepAlive();
    }, this.opts.config.manager.interval);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.inFlight;
    const { config, address } = this.opts;
    await this.client
      .leaveScheduler(
        { ip: config.server.advertiseIp || advertisedIp(address.host), port: address.port },
        { timeoutMs: 2_000, headers: clusterTokenHeaders(this.opts.clusterToken) },
      )
      .catch(() => undefined);
  }

  private async keepAlive(): Promise<void> {
    const { config, logger: log, store, address } = this.opts;
    try {
      const hosts = [...store.hosts.values()].map((h) =>
        create(managerv1.ClusterHostSchema, {
          id: h.id,
          hostname: h.hostname,
          ip: h.ip,
          seed: h.isSeed,
          uploadPort: h.uploadPort,
          apiPort: h.apiPort,
          uploadBytesTotal: h.uploadBytesTotal,
          concurrentUploads: h.concurrentUploads,
        }),
      );
      const res = await this.client.keepAliveScheduler(
        {
          clusterId: BigInt(config.manager.clusterId),
          hostname: osHostname(),
          ip: config.server.advertiseIp || advertisedIp(address.host),
          port: address.port,
          intervalSeconds: Math.max(1, Math.ceil(config.manager.interval / 1000)),
          hosts,
        },
        { timeoutMs: 10_000, headers: clusterTokenHeaders(this.opts.clusterToken) },
      );
      if (this.failing) log.info("manager reachable again");
      this.failing = false;
      const c = res.config;
      const dynamic: DynamicConfig = c ? pickSet(c, SCHEDULER_CLUSTER_KEYS) : {};
      const key = JSON.stringify(dynamic);
      if (key !== this.last) {
        this.last = key;
        this.opts.apply(dynamic);
        log.info({ schedulerId: Number(res.schedulerId), clusterId: config.manager.clusterId, dynamic }, "cluster config applied");
      }
    } catch (err) {
      const e = fromConnectError(err, "DF_ERR_MANAGER_UNAVAILABLE");
      if (!this.failing) log.warn({ code: e.code, err: e.message, manager: config.manager.url }, "manager keep-alive failed: keeping the current config");
      this.failing = true;
    } finally {
      this.inFlight = undefined;
    }
  }
}
