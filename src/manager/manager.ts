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
  private bound: HostPort | undefined;

  constructor(private readonly opts: ManagerOptions) {
    this.log = opts.logger.child({ component: "manager" });
  }

  get address(): HostPort {
    if (!this.bound) throw new Error("manager not started");
    return this.bound;
  }

  get databaseUrl(): string {
    return this.opts.config.database || `sqlite:${join(this.opts.config.dataDir, "manager.db")}`;
  }

  async start(): Promise<void> {
    const { config } = this.opts;
    const database = await openDatabase(this.databaseUrl);
    this.database = database;
    const boot = await bootstrap(database, this.opts.adminPassword);
    if (boot.generatedPassword) {
      (this.opts.announce ?? ((l) => process.stdout.write(l + "\n")))(`damselfly manager: created user root with password ${boot.generatedPassword} (shown once; set DAMSELFLY_ADMIN_PASSWORD on first start to choose it)`);
    } else if (boot.createdRoot) this.log.info("created user root with the password from DAMSELFLY_ADMIN_PASSWORD");
    const registry = new ClusterRegistry(database, config.schedulerTimeout);
    this.jobs = new JobRunner(database, registry, this.log, config.preheatTimeout, this.opts.clusterToken);
    this.app = await buildApp({ config, database, logger: this.log, registry, jobs: this.jobs, clusterToken: this.opts.clusterToken });
    const { host, port } = parseHostPort(config.listen);
    await this.app.listen({ host, port });
    const addr = this.app.server.address();
    this.bound = { host, port: typeof addr === "object" && addr ? addr.port : port };
    await this.jobs.resume();
    this.log.info({ listen: `${host.includes(":") ? `[${host}]` : host}:${this.bound.port}`, database: database.dialect }, "manager ready");
  }

  async close(): Promise<void> {
    await this.jobs?.close();
    await this.app?.close();
    await this.database?.close();
    this.app = undefined;
    this.database = undefined;
  }
}
