import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DamselflyError } from "../common/errors.js";
import { hostname as osHostname } from "node:os";
import { create } from "@bufbuild/protobuf";
import { advertisedIp, formatHostPort, parseHostPort, type HostPort } from "../common/address.js";
import type { Logger } from "../common/logger.js";
import type { DaemonConfig } from "../common/schemas.js";
import { createRpcServer, daemonv1, HostType, managerv1, schedulerv1, type RpcServer } from "../protocol/index.js";
import { Storage } from "./storage/storage.js";
import { DiskGc } from "./storage/gc.js";
import { parseWatermark } from "../common/watermark.js";
import { HttpSource } from "./source/http-source.js";
import { SchedulerLink } from "./download/scheduler-link.js";
import { schedulersFromManager } from "./manager-schedulers.js";
import { DownloadManager } from "./download-manager.js";
import { UploadServer } from "./upload/upload-server.js";
import { daemonService } from "./api/daemon-service.js";
import { ProxyServer } from "./proxy/proxy-server.js";
import type { CertificateAuthority } from "./proxy/ca.js";
import { cachedCheck, Health } from "../common/health.js";
import { MetricsServer } from "../common/metrics-server.js";
import { DaemonMetrics } from "./metrics.js";
import { probeWritable } from "./storage/storage-probe.js";

// A readiness probe writes to the store at most this often.
const STORAGE_PROBE_TTL_MS = 2_000;
import { RateLimits, type HostRateLimits } from "./rate-limits.js";

export interface DaemonOptions {
  config: DaemonConfig;
  logger: Logger;
  // DAMSELFLY_CLUSTER_TOKEN (see protocol/cluster-token.ts).
  clusterToken?: string;
}

export interface DaemonEndpoints {
  api: HostPort;
  upload: HostPort;
  proxy: HostPort;
  // With --metrics-listen.
  metrics?: HostPort;
}

// The peer daemon (or seed peer with config.seed). This is the one place that
// builds and wires its parts.
export class Daemon {
  endpoints: DaemonEndpoints = { api: { host: "", port: 0 }, upload: { host: "", port: 0 }, proxy: { host: "", port: 0 } };
  private readonly log: Logger;
  private storage: Storage | undefined;
  private source: HttpSource | undefined;
  private link: SchedulerLink | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private tasks: DownloadManager | undefined;
  private gc: DiskGc | undefined;
  private upload: UploadServer | undefined;
  private api: RpcServer | undefined;
  private proxy: ProxyServer | undefined;
  readonly metrics = new DaemonMetrics();
  readonly health = new Health();
  private metricsServer: MetricsServer | undefined;
  private phase: "starting" | "serving" | "stopping" = "starting";
  // Set on SIGTERM/SIGINT: new downloads are refused, uploads drain.
  private shuttingDown = false;
  // Host-wide and per-task byte rates; changeable while running.
  readonly rateLimits: RateLimits;

  constructor(private readonly o: DaemonOptions) {
    this.log = o.logger.child({ component: o.config.seed ? "seed-peer" : "daemon" });
    this.rateLimits = new RateLimits(o.config);
  }

  async start(): Promise<void> {
    const c = this.o.config;
    this.health.addCheck("daemon", () => (this.phase === "serving" ? undefined : this.phase));
    // Up before the store loads (a big store takes a while): probes see the
    // process alive but not ready.
    if (c.metricsListen) {
      this.metricsServer = new MetricsServer({ listen: c.metricsListen, registry: this.metrics.registry, health: this.health, logger: this.log });
      await this.metricsServer.start();
    }
    this.storage = new Storage(c.dataDir, this.log);
    await this.storage.load();
    const tasksDir = this.storage.tasksDir;
    this.health.addCheck("storage", cachedCheck(() => probeWritable(tasksDir), STORAGE_PROBE_TTL_MS));
    this.source = new HttpSource({ timeoutMs: c.sourceTimeout, extraCaPem: c.sourceCa ? await readPem(c.sourceCa, "source CA") : undefined });
    this.upload = new UploadServer({
      listen: c.uploadListen,
      storage: this.storage,
      logger: this.log,
      uploadConcurrency: c.uploadConcurrency || (c.seed ? 8 : 4),
      superSeeding: c.seed && c.superSeeding,
      onCorruptPiece: (task) => this.tasks?.repair(task),
      health: this.health,
      throttle: this.rateLimits.uploads,
    });
    await this.upload.start();
    const upload = this.upload;
    this.metrics.bindUpload(() => upload.stats);

    const apiListen = parseHostPort(c.listen, "listen address");
    const ip = c.advertiseIp || advertisedIp(this.upload.address.host);
    const name = c.hostname || osHostname();
    const hostId = `${name}-${createHash("sha256").update(`${name}|${ip}|${this.upload.address.port}|${c.seed}`).digest("hex").slice(0, 12)}`;
    const tasks = (this.tasks = new DownloadManager({ config: c, hostId, storage: this.storage, source: this.source, logger: this.log, metrics: this.metrics, rateLimits: this.rateLimits }));
    const gc = (this.gc = new DiskGc({
      storage: this.storage,
      logger: this.log,
      taskTtlMs: c.taskTtl,
      intervalMs: c.gcInterval,
      high: parseWatermark(c.diskGcHighWatermark),
      low: parseWatermark(c.diskGcLowWatermark),
      remove: async (victims, reason) => {
        const r = await tasks.removeIdle(victims);
        this.metrics.gcEvicted(r.removed.length, r.freed, reason);
        return r;
      },
    }));
    this.storage.beforeAllocate = (t, bytes) => gc.makeRoom(t, bytes);
    this.api = await createRpcServer(
      c.listen,
      (router) => {
        router.service(daemonv1.DaemonService, daemonService({ tasks, storage: this.storage!, gc, logger: this.log, clusterToken: this.o.clusterToken, metrics: this.metrics, shuttingDown: () => this.shuttingDown }));
      },
      [],
      { health: this.health },
    );
    // The scheduler learns our API port, known only once bound (it may be 0).
    const host = create(schedulerv1.HostSchema, {
      id: hostId,
      hostname: name,
      ip,
      uploadPort: this.upload.address.port,
      apiPort: this.api.address.port,
      type: c.seed ? HostType.SEED : HostType.NORMAL,
      uploadSlots: c.uploadSlots,
    });
    const onConfig = (dc: managerv1.DaemonClusterConfig) => this.applyClusterConfig(dc);
    const schedulers = (c.manager ? await schedulersFromManager(c.manager, c.clusterId, this.log, this.o.clusterToken, false, onConfig) : undefined) ?? c.scheduler;
    this.link = schedulers.length > 0
      ? new SchedulerLink({
          addresses: schedulers,
          host,
          logger: this.log,
          connectTimeoutMs: c.schedulerConnectTimeout,
          intervalMs: c.announceInterval,
          cachedTasks: () => this.tasks?.cachedTasks() ?? [],
          uploadStats: () => ({ concurrentUploads: this.upload?.stats.active ?? 0, uploadBytesTotal: this.upload?.stats.bytesTotal ?? 0 }),
        })
      : undefined;
    tasks.scheduler = this.link;
    const link = this.link;
    if (link) this.health.addCheck("scheduler", () => (link.reachable ? undefined : `no scheduler answered the last keep-alive (${link.addresses.join(", ")})`));
    // The X.509 library loads only when interception is configured.
    const ca: CertificateAuthority | undefined = c.proxyIntercept.length > 0
      ? await (await import("./proxy/ca.js")).CertificateAuthority.loadOrCreate({
          certFile: c.proxyCaCert || join(c.dataDir, "proxy-ca", "ca.crt"),
          keyFile: c.proxyCaKey || join(c.dataDir, "proxy-ca", "ca.key"),
          logger: this.log,
        })
      : undefined;
    this.proxy = new ProxyServer({
      listen: c.proxyListen,
      logger: this.log,
      tasks,
      source: this.source,
      dispatcher: this.source.dispatcher,
      defaultRegistry: c.registryMirror,
      plainHttpRegistries: c.plainHttpRegistries,
      rules: c.proxyRules,
      intercept: c.proxyIntercept,
      ca,
      authTtlMs: c.proxyAuthTtl,
      minP2pSize: c.proxyMinP2pSize,
      stallTimeoutMs: c.proxyStallTimeout,
      sourceTimeoutMs: c.sourceTimeout,
      prefetch: c.proxyPrefetch,
      metrics: this.metrics,
      health: this.health,
      shuttingDown: () => this.shuttingDown,
    });
    await this.proxy.start();
    await this.link?.start();
    gc.start();
    if (c.manager && this.link) this.refreshSchedulers(c.manager, c.clusterId, c.managerRefresh, this.link);
    this.endpoints = { api: { host: apiListen.host, port: this.api.address.port }, upload: this.upload.address, proxy: this.proxy.address, ...(this.metricsServer ? { metrics: this.metricsServer.address } : {}) };
    this.phase = "serving";
    this.log.info(
      {
        hostId,
        seed: c.seed,
        api: formatHostPort(this.endpoints.api),
        upload: formatHostPort(this.endpoints.upload),
        proxy: formatHostPort(this.endpoints.proxy),
        ...(this.endpoints.metrics ? { metrics: formatHostPort(this.endpoints.metrics) } : {}),
        ...(ca ? { proxyCa: ca.certFile } : {}),
        advertiseIp: ip,
        scheduler: schedulers,
        dataDir: c.dataDir,
        ...limitsForLog(this.rateLimits.current),
      },
      "daemon ready",
    );
  }

  // Asks the manager for the scheduler list again now and then: schedulers
  // that join or leave the cluster are picked up without a restart. A manager
  // that does not answer leaves the list as it is.
  private refreshSchedulers(manager: string, clusterId: number, everyMs: number, link: SchedulerLink): void {
    let busy = false;
    this.refreshTimer = setInterval(() => {
      if (busy) return;
      busy = true;
      void schedulersFromManager(manager, clusterId, this.log, this.o.clusterToken, true, (dc) => this.applyClusterConfig(dc))
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
    const c = this.o.config;
    const pick = (v: bigint | undefined, own: number) => (v === undefined ? own : Number(v));
    const next: HostRateLimits = {
      totalDownloadRateLimit: pick(dc.totalDownloadRateLimit, c.totalDownloadRateLimit),
      totalUploadRateLimit: pick(dc.totalUploadRateLimit, c.totalUploadRateLimit),
      backToSourceRateLimit: pick(dc.backToSourceRateLimit, c.backToSourceRateLimit),
      perTaskRateLimit: pick(dc.perTaskRateLimit, c.perTaskRateLimit),
    };
    const now = this.rateLimits.current;
    if ((Object.keys(next) as Array<keyof HostRateLimits>).every((k) => next[k] === now[k])) return;
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
    this.gc?.stop();
    const started = Date.now();
    const timeoutMs = this.o.config.shutdownTimeout;
    if (this.upload) {
      this.log.info({ activeUploads: this.upload.stats.active, timeoutMs }, "shutting down: leaving the schedulers, finishing uploads in flight");
      await this.link?.leave();
      const drained = await this.upload.drain(Math.max(0, timeoutMs - (Date.now() - started)));
      if (drained) this.log.info({ ms: Date.now() - started }, "uploads in flight finished");
      else this.log.warn({ ms: Date.now() - started, activeUploads: this.upload.stats.active }, "shutdown timeout: cutting the uploads still in flight");
    }
    await this.tasks?.close();
    await this.link?.close();
    await Promise.all([this.api?.close(), this.upload?.close(), this.proxy?.close()]);
    await this.source?.close();
    await this.storage?.close();
    await this.metricsServer?.close();
    const up = this.upload?.stats;
    this.log.info(up ? { piecesServed: up.pieces, bytesServed: up.bytesTotal, busyAnswers: up.busy, corruptDetected: up.corruptDetected } : {}, "daemon stopped");
  }
}

// Only the limits that are set: most daemons have none.
function limitsForLog(l: object): Record<string, number> {
  return Object.fromEntries(Object.entries(l).filter(([, v]) => typeof v === "number" && v > 0));
}

async function readPem(path: string, what: string): Promise<string> {
  try {
    const pem = await readFile(path, "utf8");
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in the file");
    return pem;
  } catch (err) {
    throw new DamselflyError("DF_ERR_CONFIG", `${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}
