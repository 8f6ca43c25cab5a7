import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { parseHostPort, type HostPort } from "../common/address.js";
import type { Logger } from "../common/logger.js";
import type { ManagerConfig } from "../common/schemas.js";
import { bootstrap } from "./bootstrap.js";
import { ClusterRegistry } from "./cluster-registry.js";
import { openDatabase, type Database } from "./db/database.js";
import { buildApp } from "./http/app.js";
import { JobRunner } from "./jobs/job-runner.js";
import { resolveImageLayers } from "./extender/image-layers.js";
import { SchedulerLocality } from "./extender/scheduler-locality.js";
import { podNodesFromConfig, type PodNodes } from "./extender/pod-nodes.js";
import { sql } from "kysely";
import { DamselflyError } from "../common/errors.js";
import { formatHostPort } from "../common/address.js";
import { cachedCheck, Health } from "../common/health.js";
import { MetricsServer } from "../common/metrics-server.js";
import { ManagerMetrics } from "./metrics.js";
import { checkBind, loadTlsIdentity } from "../common/tls/bind-policy.js";
import type { TlsIdentity } from "../common/tls/identity.js";
import { configuredRegistries, knownRegistries, LIST_REGISTRIES_TIMEOUT_MS } from "./extender/known-registries.js";

// A database that does not answer a trivial query this fast is not there.
const DB_PROBE_TIMEOUT_MS = 2_000;
const DB_PROBE_TTL_MS = 1_000;

export interface ManagerOptions {
  config: ManagerConfig;
  logger: Logger;
  // DAMSELFLY_ADMIN_PASSWORD: the root user's password on first start.
  adminPassword?: string;
  // DAMSELFLY_CLUSTER_TOKEN (see protocol/cluster-token.ts).
  clusterToken?: string;
  // Where the one-time generated root password is shown (stdout).
  announce?: (line: string) => void;
}

// The manager process: database, REST/open API, component RPC, job runner.
export class Manager {
  private readonly log: Logger;
  private database: Database | undefined;
  private app: FastifyInstance | undefined;
  private jobs: JobRunner | undefined;
  private locality: SchedulerLocality | undefined;
  private podNodes: { pods: PodNodes; client: { close(): Promise<void> } } | undefined;
  private bound: HostPort | undefined;
  readonly metrics = new ManagerMetrics();
  readonly health = new Health();
  private metricsServer: MetricsServer | undefined;
  // The root password generated on the first start (for `up` to show), once
  // start() returned; undefined when it came from DAMSELFLY_ADMIN_PASSWORD.
  generatedPassword: string | undefined;
  // Mutual TLS on the component RPC and links to schedulers, with --tls-*.
  readonly tls: TlsIdentity | undefined;

  constructor(private readonly opts: ManagerOptions) {
    this.log = opts.logger.child({ component: "manager" });
    this.tls = loadTlsIdentity(opts.config.tls, this.log);
    // Components check that the manager they dial has a manager
    // certificate: any other would only fail later, on their side.
    if (this.tls && this.tls.identity.role !== "manager") {
      const role = this.tls.identity.role;
      this.tls.close();
      throw new DamselflyError(
        "DF_ERR_CONFIG",
        `${opts.config.tls.cert} is a ${role} certificate; the manager needs one of role manager (damselfly certs issue --role manager)`,
      );
    }
  }

  get address(): HostPort {
    if (!this.bound) throw new Error("manager not started");
    return this.bound;
  }

  get databaseUrl(): string {
    return this.opts.config.database.url || `sqlite:${join(this.opts.config.dataDir, "manager.db")}`;
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    const { host, port } = parseHostPort(config.server.listen);
    // Before anything is opened: a refused address leaves nothing behind.
    checkBind("manager", host, this.tls !== undefined, config.insecure, this.log);
    const database = await openDatabase(this.databaseUrl);
    this.database = database;
    this.health.addCheck(
      "database",
      cachedCheck(() => pingDatabase(database), DB_PROBE_TTL_MS),
    );
    const boot = await bootstrap(database, this.opts.adminPassword);
    if (boot.generatedPassword) {
      this.generatedPassword = boot.generatedPassword;
      (this.opts.announce ?? ((l) => process.stdout.write(l + "\n")))(
        `damselfly manager: created user root with password ${boot.generatedPassword} (shown once; set DAMSELFLY_ADMIN_PASSWORD on first start to choose it)`,
      );
    } else if (boot.createdRoot) this.log.info("created user root with the password from DAMSELFLY_ADMIN_PASSWORD");
    const registry = new ClusterRegistry(database, config.scheduler.timeout);
    this.jobs = new JobRunner(database, registry, this.log, config.jobs.preheatTimeout, this.opts.clusterToken, this.tls, {
      s3: config.source.s3,
      hfEndpoint: config.source.hf.endpoint,
    });
    this.jobs.onState = (type, state) => this.metrics.job(type, state);
    this.podNodes = podNodesFromConfig(config, this.log.child({ component: "extender" }));
    this.podNodes?.pods.start(config.extender.kubernetes.interval);
    const nodeOf = this.podNodes?.pods.nodeOf;
    this.locality = config.extender.locality ? this.startLocality(this.jobs, nodeOf) : undefined;
    this.app = await buildApp(
      {
        config,
        database,
        logger: this.log,
        registry,
        jobs: this.jobs,
        clusterToken: this.opts.clusterToken,
        ...(this.locality ? { locality: this.locality } : {}),
        ...(nodeOf ? { nodeOf } : {}),
      },
      { metrics: this.metrics, health: this.health },
      this.tls,
    );
    if (config.metrics.listen) {
      this.metricsServer = new MetricsServer({
        listen: config.metrics.listen,
        registry: this.metrics.registry,
        health: this.health,
        logger: this.log,
        tls: this.tls,
        insecure: config.insecure,
      });
      await this.metricsServer.start();
    }
    await this.app.listen({ host, port });
    const addr = this.app.server.address();
    this.bound = { host, port: typeof addr === "object" && addr ? addr.port : port };
    await this.jobs.resume();
    this.log.info(
      {
        listen: `${host.includes(":") ? `[${host}]` : host}:${this.bound.port}`,
        url: `${this.tls ? "https" : "http"}://${formatHostPort(this.bound)}`,
        tls: this.tls ? `mutual TLS as ${this.tls.identity.role}/${this.tls.identity.name}` : "off",
        database: database.dialect,
        ...(this.metricsServer ? { metrics: formatHostPort(this.metricsServer.address) } : {}),
      },
      "manager ready",
    );
  }

  private startLocality(jobs: JobRunner, nodeOf: ((host: string) => string) | undefined): SchedulerLocality {
    const { extender } = this.opts.config;
    const { registries, ...access } = jobs.schedulerAccess();
    const logger = this.log.child({ component: "extender" });
    // Where images may be resolved: known-registries.ts.
    const known = { ...access, logger, configured: configuredRegistries(extender.registries) };
    const locality = new SchedulerLocality({
      ...access,
      resolve: (image, signal) => resolveImageLayers(image, extender.platform, signal, registries),
      allowed: (signal) => knownRegistries(known, signal, LIST_REGISTRIES_TIMEOUT_MS),
      logger,
      ...(nodeOf ? { nodeOf } : {}),
    });
    locality.start(extender.refreshInterval);
    return locality;
  }

  async close(): Promise<void> {
    // Before the jobs: the refresh uses their registry connections.
    await this.locality?.stop();
    this.locality = undefined;
    await this.podNodes?.pods.stop();
    await this.podNodes?.client.close();
    this.podNodes = undefined;
    await this.jobs?.close();
    await this.app?.close();
    await this.metricsServer?.close();
    this.metricsServer = undefined;
    await this.database?.close();
    this.tls?.close();
    this.app = undefined;
    this.database = undefined;
  }
}

async function pingDatabase(database: Database): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`database did not answer within ${DB_PROBE_TIMEOUT_MS} ms`), DB_PROBE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([sql`select 1`.execute(database.db).then(() => undefined), slow]);
  } catch (err) {
    return `database unreachable: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}
