// `damselfly scheduler`, `daemon` and `manager`: the long-running components.
import { Command } from "commander";
import { formatHostPort } from "../../common/address.js";
import { createLogger, type LogLevel } from "../../common/logger.js";
import { ADMIN_PASSWORD_ENV, daemonSchema, managerSchema, schedulerSchema } from "../../common/schemas.js";
import { initTracing } from "../../common/trace.js";
import { loadWithNotices, serve, withErrors, withSchema } from "./kit.js";

// An env-only secret as a component option: absent when unset.
const secret = <K extends string>(key: K, v: string): Partial<Record<K, string>> => (v ? ({ [key]: v } as Record<K, string>) : {});

export function schedulerCommand(): Command {
  const cmd = withSchema(new Command("scheduler").description("run the scheduler (assigns parents to peers)"), schedulerSchema, "SCHEDULER", {
    placeholders: { manager: "url" },
  });
  return cmd.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const { config, logNotices } = loadWithNotices(self, schedulerSchema, "SCHEDULER");
      const logger = createLogger(config.logLevel as LogLevel);
      logNotices(logger);
      await initTracing("damselfly-scheduler", logger);
      const { Scheduler } = await import("../../scheduler/index.js");
      const s = new Scheduler({ config, logger, ...secret("clusterToken", config.security.clusterToken) });
      await serve("damselfly", logger, s, () => logger.info({ listen: formatHostPort(s.address) }, "scheduler ready"));
    }),
  );
}

export function daemonCommand(): Command {
  const cmd = withSchema(new Command("daemon").description("run a peer daemon (or a seed peer with --seed)"), daemonSchema, "DAEMON", {
    placeholders: { scheduler: "host:port", dataDir: "dir", manager: "url", listen: "address", socketGroup: "group" },
  });
  return cmd.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const { config, logNotices } = loadWithNotices(self, daemonSchema, "DAEMON");
      const logger = createLogger(config.logLevel as LogLevel);
      logNotices(logger);
      await initTracing(config.seed ? "damselfly-seed-peer" : "damselfly-daemon", logger);
      const { Daemon } = await import("../../peer/index.js");
      // The daemon logs its own "daemon ready" line once listening; close()
      // drains uploads for up to shutdownTimeout.
      await serve("damselfly", logger, new Daemon({ config, logger }), undefined, config.server.shutdownTimeout + 15_000);
    }),
  );
}

export function managerCommand(): Command {
  const cmd = withSchema(
    new Command("manager").description("run the manager (control plane: REST API, console, preheat jobs)"),
    managerSchema,
    "MANAGER",
    { placeholders: { database: "url", dataDir: "dir", s3Endpoint: "url", hfEndpoint: "url" } },
    `\n\n${ADMIN_PASSWORD_ENV} sets the root user's password on first start (else one is generated and printed once).`,
  );
  return cmd.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const { config, logNotices } = loadWithNotices(self, managerSchema, "MANAGER");
      // Not passed on to anything this process starts.
      delete process.env[ADMIN_PASSWORD_ENV];
      const logger = createLogger(config.logLevel as LogLevel);
      logNotices(logger);
      const { Manager } = await import("../../manager/index.js");
      await serve(
        "damselfly",
        logger,
        new Manager({ config, logger, ...secret("clusterToken", config.security.clusterToken), ...secret("adminPassword", config.security.adminPassword) }),
      );
    }),
  );
}
