import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { formatHostPort, parseHostPort, type HostPort } from "../common/address.js";
import type { Logger } from "../common/logger.js";
import { daemonSchema, type DaemonConfig } from "../common/schemas.js";
import { daemonv1, HostType, type managerv1, schedulerv1 } from "../protocol/index.js";
import { Storage } from "./storage/storage.js";
import { DiskGc } from "./storage/gc.js";
import { parseWatermark } from "../common/watermark.js";
import { HttpSource } from "./source/http-source.js";
import { EgressPolicy } from "../common/egress.js";
import { ApiListeners } from "./api/api-listener.js";
import { BlobAccess } from "./proxy/blob-access.js";
import { SchedulerLink } from "./download/scheduler-link.js";
import { schedulersFromManager } from "./manager-schedulers.js";
import { DownloadManager, removeIdle } from "./download-manager.js";
import { cachedTask } from "./download/peer-id.js";
import { UploadServer } from "./upload/upload-server.js";
import { daemonService } from "./api/daemon-service.js";
import { ProxyServer } from "./proxy/proxy-server.js";
import type { CertificateAuthority } from "./proxy/ca.js";
import { cachedCheck, Health } from "../common/health.js";
import { MetricsServer } from "../common/metrics-server.js";
import { DaemonMetrics } from "./metrics.js";
import { probeWritable } from "./storage/storage-probe.js";
import { RateLimits } from "./rate-limits.js";
import { DAEMON_CLUSTER_KEYS } from "../common/cluster-config.js";
import { checkBind, defaultedListen, loadTlsIdentity } from "../common/tls/bind-policy.js";
import type { TlsIdentity } from "../common/tls/identity.js";
import { startNodeReady, type NodeReady } from "./node-ready.js";
import { hostIdentity, hostRateLimits, limitsForLog, readPem, type HostIdentity } from "./daemon-setup.js";

// A readiness probe writes to the store at most this often.
const STORAGE_PROBE_TTL_MS = 2_000;

export interface DaemonOptions {
  // The cluster token is config.security.clusterToken (env only).
  config: DaemonConfig;
  logger: Logger;
}

export interface DaemonEndpoints {
  // The TCP API, or {host: the socket's path, port: 0} with only a socket.
  api: HostPort;
  // What `get --daemon` names: unix:PATH, or http(s)://HOST:PORT.
  apiUrl: string;
  upload: HostPort;
  proxy: HostPort;
  // With --metrics-listen.
  metrics?: HostPort;
}

// The daemon's parts. start() sets each once built, so close() stops
// whatever a failed start left running.
interface DaemonParts {
  metricsServer: MetricsServer;
  storage: Storage;
  source: HttpSource;
  upload: UploadServer;
  // None without schedulers.
  link: SchedulerLink | undefined;
  gc: DiskGc;
  tasks: DownloadManager;
  api: ApiListeners;
  proxy: ProxyServer;
}

// The peer daemon (or seed peer with config.seed). This is the one place that
// builds and wires its parts.
export class Daemon {
  endpoints: DaemonEndpoints = { api: { host: "", port: 0 }, apiUrl: "", upload: { host: "", port: 0 }, proxy: { host: "", port: 0 } };
  private readonly log: Logger;
  private readonly parts: Partial<DaemonParts> = {};
  private refreshTimer: NodeJS.Timeout | undefined;
  private nodeReady: NodeReady | undefined;
  readonly metrics = new DaemonMetrics();
  readonly health = new Health();
  private proxyCa: string | undefined;
  private phase: "starting" | "serving" | "stopping" = "starting";
  // Set on SIGTERM/SIGINT: new downloads are refused, uploads drain.
  private shuttingDown = false;
  // Host-wide and per-task byte rates; changeable while running.
  readonly rateLimits: RateLimits;
  // Mutual TLS on every network listener and link, with --tls-*.
  readonly tls: TlsIdentity | undefined;

  constructor(private readonly o: DaemonOptions) {
    this.log = o.logger.child({ component: o.config.seed ? "seed-peer" : "daemon" });
    this.rateLimits = new RateLimits(hostRateLimits(o.config));
    this.tls = loadTlsIdentity(o.config.tls, this.log);
  }

  // The parts are built in dependency order, each given what it needs, then
  // the listeners start. The upload listener is bound first (the host ID
  // needs its port); the scheduler learns the API port when the link starts.
  async start(): Promise<void> {
    const c = this.o.config;
    const p = this.parts;
    this.health.addCheck("daemon", () => (this.phase === "serving" ? undefined : this.phase));
    // Up before the store loads (a big store takes a while): probes see the
    // process alive but not ready.
    if (c.metrics.listen) {
      p.metricsServer = new MetricsServer({
        listen: c.metrics.listen,
        registry: this.metrics.registry,
        health: this.health,
        logger: this.log,
        tls: this.tls,
        insecure: c.insecure,
      });
      await p.metricsServer.start();
    }
    const storage = (p.storage = await this.loadStorage());
    const source = (p.source = new HttpSource({
      timeoutMs: c.source.timeout,
      extraCaPem: c.source.ca ? await readPem(c.source.ca, "source CA") : undefined,
      egress: new EgressPolicy(c.source.egress),
    }));
    const upload = (p.upload = await this.startUpload(storage));
    const identity = hostIdentity(c, upload.address, this.tls);
    const schedulers = (c.manager.url ? await this.schedulersFromManager(false) : undefined) ?? c.scheduler.addresses;
    const link = (p.link = this.schedulerLink(schedulers, identity, upload, storage));
    const gc = (p.gc = this.diskGc(storage, link));
    const tasks = (p.tasks = new DownloadManager({
      config: {
        piecesInFlight: c.download.piecesInFlight,
        piecesPerParent: c.download.piecesPerParent,
        pieceTimeout: c.download.pieceTimeout,
        scheduleTimeout: c.scheduler.scheduleTimeout,
        maxContentLength: c.download.maxContentLength,
      },
      tls: this.tls,
      hostId: identity.hostId,
      storage,
      source,
      scheduler: link,
      makeRoom: (t, bytes) => gc.makeRoom(t, bytes),
      logger: this.log,
      metrics: this.metrics,
      rateLimits: this.rateLimits,
    }));
    const api = (p.api = await this.startApi(tasks, storage, gc, source));
    const proxy = (p.proxy = await this.buildProxy(tasks, source));
    await proxy.start();
    // The scheduler learns our API port, known only once bound (it may be 0).
    await link?.start(api.port);
    gc.start();
    if (c.manager.url && link) this.refreshSchedulers(c.manager.refresh, link);
    this.endpoints = {
      api: api.address,
      apiUrl: api.target,
      upload: upload.address,
      proxy: proxy.address,
      ...(p.metricsServer ? { metrics: p.metricsServer.address } : {}),
    };
    this.phase = "serving";
    this.logReady(identity, schedulers);
    this.nodeReady = startNodeReady(c, proxy.address, this.log);
  }

  private async loadStorage(): Promise<Storage> {
    const storage = new Storage(this.o.config.dataDir, this.log);
    await storage.load();
    const tasksDir = storage.tasksDir;
    this.health.addCheck(
      "storage",
      cachedCheck(() => probeWritable(tasksDir), STORAGE_PROBE_TTL_MS),
    );
    return storage;
  }

  private startApi(tasks: DownloadManager, storage: Storage, gc: DiskGc, source: HttpSource): Promise<ApiListeners> {
    const c = this.o.config;
    const service = daemonService({
      tasks,
      storage,
      gc,
      logger: this.log,
      clusterToken: this.clusterToken,
      metrics: this.metrics,
      shuttingDown: () => this.shuttingDown,
      access: new BlobAccess({ dispatcher: source.dispatcher, ttlMs: c.proxy.authTtl, timeoutMs: c.source.timeout }),
      s3: { options: c.source.s3, dispatcher: source.dispatcher },
      hfEndpoint: c.source.hf.endpoint,
    });
    if (c.seed && !c.server.listen.some((l) => !l.startsWith("unix:")))
      this.log.warn("seed peer without a network API (--listen HOST:PORT): the scheduler cannot trigger its downloads");
    const { listen, socketGroup } = c.server;
    const o = { listen, socketGroup, tls: this.tls, insecure: c.insecure, health: this.health, logger: this.log };
    return ApiListeners.start(o, (router) => router.service(daemonv1.DaemonService, service));
  }

  private get clusterToken(): string | undefined {
    return this.o.config.security.clusterToken || undefined;
  }

  private async startUpload(storage: Storage): Promise<UploadServer> {
    const c = this.o.config;
    const listen = defaultedListen(c.upload.listen, daemonSchema.upload.listen.default, this.tls !== undefined, c.insecure);
    checkBind("upload", parseHostPort(listen, "upload listen address").host, this.tls !== undefined, c.insecure, this.log);
    const upload = new UploadServer({
      listen,
      tls: this.tls,
      storage,
      logger: this.log,
      uploadConcurrency: c.upload.concurrency || (c.seed ? 8 : 4),
      superSeeding: c.seed && c.upload.superSeeding,
      health: this.health,
      throttle: this.rateLimits.uploads,
      slotsPerAddress: c.upload.slotsPerAddress,
      connectionsPerAddress: c.upload.connectionsPerAddress,
      writeStallTimeoutMs: c.upload.writeStallTimeout,
      idleTimeoutMs: c.upload.idleTimeout,
    });
    await upload.start();
    this.metrics.bindUpload(() => upload.stats);
    return upload;
  }

  private diskGc(storage: Storage, link: SchedulerLink | undefined): DiskGc {
    const g = this.o.config.gc;
    return new DiskGc({
      storage,
      logger: this.log,
      taskTtlMs: g.taskTtl,
      intervalMs: g.interval,
      high: parseWatermark(g.highWatermark),
      low: parseWatermark(g.lowWatermark),
      remove: async (victims, reason) => {
        const r = await removeIdle(storage, link, victims);
        this.metrics.gcEvicted(r.removed.length, r.freed, reason);
        return r;
      },
    });
  }

  private schedulerLink(schedulers: readonly string[], id: HostIdentity, upload: UploadServer, storage: Storage): SchedulerLink | undefined {
    if (schedulers.length === 0) return undefined;
    const c = this.o.config;
    const host = create(schedulerv1.HostSchema, {
      id: id.hostId,
      hostname: id.name,
      ip: id.ip,
      uploadPort: upload.address.port,
      type: c.seed ? HostType.SEED : HostType.NORMAL,
      uploadSlots: c.upload.slots,
    });
    const link = new SchedulerLink({
      addresses: schedulers,
      host,
      logger: this.log,
      connectTimeoutMs: c.scheduler.connectTimeout,
      registerTimeoutMs: c.scheduler.registerTimeout,
      intervalMs: c.scheduler.announceInterval,
      // With TLS only tasks whose pieces all have signed digests.
      cachedTasks: () => storage.finishedTasks().flatMap((t) => (!this.tls || t.trusted ? [cachedTask(id.hostId, t)] : [])),
      uploadStats: () => ({ concurrentUploads: upload.stats.active, uploadBytesTotal: upload.stats.bytesTotal }),
      tls: this.tls,
    });
    this.metrics.bindSchedulers(() => link.health());
    this.health.addCheck("scheduler", () => (link.reachable ? undefined : `no scheduler answered the last keep-alive (${link.addresses.join(", ")})`));
    return link;
  }

  private async buildProxy(tasks: DownloadManager, source: HttpSource): Promise<ProxyServer> {
    const c = this.o.config;
    const p = c.proxy;
    // The X.509 library loads only when interception is configured.
    const ca: CertificateAuthority | undefined =
      p.intercept.length > 0
        ? await (await import("./proxy/ca.js")).CertificateAuthority.loadOrCreate({
            certFile: p.caCert || join(c.dataDir, "proxy-ca", "ca.crt"),
            keyFile: p.caKey || join(c.dataDir, "proxy-ca", "ca.key"),
            logger: this.log,
            // The daemon's own CA may certify only the intercepted hosts.
            managed: !p.caCert && !p.caKey,
            permitted: (await import("./proxy/ca-constraints.js")).permittedNames(p.intercept),
          })
        : undefined;
    this.proxyCa = ca?.certFile;
    return new ProxyServer({
      listen: p.listen,
      logger: this.log,
      tasks,
      source,
      defaultRegistry: p.registryMirror,
      plainHttpRegistries: p.plainHttpRegistries,
      rules: p.rules,
      intercept: p.intercept,
      ca,
      authTtlMs: p.authTtl,
      minP2pSize: p.minP2pSize,
      stallTimeoutMs: p.stallTimeout,
      sourceTimeoutMs: c.source.timeout,
      prefetch: p.prefetch,
      metrics: this.metrics,
      health: this.health,
      shuttingDown: () => this.shuttingDown,
      insecure: c.insecure,
      policy: { connectPorts: p.connectPorts, ports: p.ports, allowLocal: p.allowLocal },
    });
  }

  private logReady(id: HostIdentity, schedulers: readonly string[]): void {
    const e = this.endpoints;
    this.log.info(
      {
        hostId: id.hostId,
        seed: this.o.config.seed,
        ...this.parts.api?.logFields(),
        upload: formatHostPort(e.upload),
        proxy: formatHostPort(e.proxy),
        ...(e.metrics ? { metrics: formatHostPort(e.metrics) } : {}),
        ...(this.proxyCa ? { proxyCa: this.proxyCa } : {}),
        advertiseIp: id.ip,
        scheduler: schedulers,
        dataDir: this.o.config.dataDir,
        ...limitsForLog(this.rateLimits.current),
      },
      "daemon ready",
    );
  }

  // The manager's scheduler list for our cluster; its answer also carries
  // the cluster's dynamic settings, applied here.
  private schedulersFromManager(quiet: boolean): Promise<string[] | undefined> {
    const m = this.o.config.manager;
    return schedulersFromManager(m.url, m.clusterId, this.log, this.clusterToken, quiet, (dc) => this.applyClusterConfig(dc), this.tls);
  }

  // Asks the manager for the scheduler list again now and then: schedulers
  // that join or leave the cluster are picked up without a restart. A manager
  // that does not answer leaves the list as it is.
  private refreshSchedulers(everyMs: number, link: SchedulerLink): void {
    let busy = false;
    this.refreshTimer = setInterval(() => {
      if (busy) return;
      busy = true;
      void this.schedulersFromManager(true)
        .then(async (list) => {
          if (list && list.join(",") !== link.addresses.join(",")) {
            this.log.info({ schedulers: list }, "scheduler list changed");
            await link.setAddresses(list);
          }
        })
        .finally(() => (busy = false));
    }, everyMs);
    this.refreshTimer.unref();
  }

  // The cluster's dynamic rate limits from the manager; a key it does not set
  // keeps this daemon's own value. Running downloads and uploads follow at once.
  private applyClusterConfig(dc: managerv1.DaemonClusterConfig): void {
    const next = hostRateLimits(this.o.config, dc);
    const now = this.rateLimits.current;
    if (DAEMON_CLUSTER_KEYS.every((k) => next[k] === now[k])) return;
    this.rateLimits.set(next);
    this.log.info({ ...next }, "rate limits applied");
  }

  // Graceful exit: refuse new work (API downloads get DF_ERR_SHUTTING_DOWN,
  // proxied blobs go straight to the origin, piece requests are told busy),
  // tell the schedulers this host leaves so they move its children
  // elsewhere, let uploads in flight finish for up to shutdownTimeout, then
  // stop everything.
  async close(): Promise<void> {
    this.phase = "stopping";
    this.shuttingDown = true;
    clearInterval(this.refreshTimer);
    // First: pods keyed on the label stop coming here while we drain.
    await this.nodeReady?.stop();
    const p = this.parts;
    p.gc?.stop();
    const started = Date.now();
    const timeoutMs = this.o.config.server.shutdownTimeout;
    if (p.upload) {
      this.log.info({ activeUploads: p.upload.stats.active, timeoutMs }, "shutting down: leaving the schedulers, finishing uploads in flight");
      await p.link?.leave();
      const drained = await p.upload.drain(Math.max(0, timeoutMs - (Date.now() - started)));
      if (drained) this.log.info({ ms: Date.now() - started }, "uploads in flight finished");
      else this.log.warn({ ms: Date.now() - started, activeUploads: p.upload.stats.active }, "shutdown timeout: cutting the uploads still in flight");
    }
    await p.tasks?.close();
    await p.link?.close();
    await Promise.all([p.api?.close(), p.upload?.close(), p.proxy?.close()]);
    await p.source?.close();
    await p.storage?.close();
    await p.metricsServer?.close();
    this.tls?.close();
    const up = p.upload?.stats;
    this.log.info(
      up ? { piecesServed: up.pieces, bytesServed: up.bytesTotal, busyAnswers: up.busy, corruptDetected: up.corruptDetected } : {},
      "daemon stopped",
    );
  }
}
