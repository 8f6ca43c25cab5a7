// The `damselfly` command line: scheduler, daemon, get, up, config print.
// bin/damselfly and bin/dfget call run(); running this file directly works too.
import { version } from "../common/version.js";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Argument, Command, CommanderError, Option } from "commander";
import { formatHostPort } from "../common/address.js";
import { envName, loadConfig, type Schema } from "../common/config.js";
import { DamselflyError } from "../common/errors.js";
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from "../common/logger.js";
import { cacheSchema, daemonSchema, DEFAULT_SCHEDULER_PORT, getSchema, managerSchema, preheatSchema, schedulerSchema } from "../common/schemas.js";
import { initTracing, shutdownTracing, type TracingLog } from "../common/trace.js";
import { formatDuration } from "./format.js";
import { addConfigFileOption, addSchemaOptions, envHelp, loadCommandConfig } from "./options.js";

export interface RunOptions {
  // Behave as `dfget`: argv is what follows `damselfly get`.
  dfget?: boolean;
}

const COMPONENTS = {
  scheduler: { schema: schedulerSchema as Schema, envPrefix: "SCHEDULER" },
  daemon: { schema: daemonSchema as Schema, envPrefix: "DAEMON" },
  get: { schema: getSchema as Schema, envPrefix: "GET" },
  manager: { schema: managerSchema as Schema, envPrefix: "MANAGER" },
} as const;


// Waits until stdout and stderr have handed everything to the OS.
async function flushStdio(): Promise<void> {
  await Promise.all(
    [process.stdout, process.stderr].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed || !s.writable) return resolve();
          s.write("", () => resolve());
        }),
    ),
  );
}

// Prints "<prefix>: <CODE>: <message>" and exits with the code's exit status.
async function fail(prefix: string, err: unknown): Promise<never> {
  const e = DamselflyError.from(err);
  process.stderr.write(`${prefix}: ${e.code}: ${e.message}\n`);
  // The failed get's spans are worth the most: send them (no-op when off).
  await shutdownTracing(2_000);
  await flushStdio();
  process.exit(e.exitCode);
}

// Commander prints usage errors through this: same shape as other failures.
function usageOutput(prefix: string) {
  return {
    outputError: (str: string, write: (s: string) => void) => {
      const msg = str.trim().replace(/^error:\s*/i, "");
      write(`${prefix}: DF_ERR_USAGE: ${msg}\n`);
    },
  };
}

function withErrors<A extends unknown[]>(prefix: string, fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      await fail(prefix, err);
    }
  };
}

// The shared secret of the component RPCs (protocol/cluster-token.ts), from
// the environment only: never a flag (visible in ps) or a config file key.
function clusterToken(): { clusterToken?: string } {
  const t = process.env.DAMSELFLY_CLUSTER_TOKEN;
  return t ? { clusterToken: t } : {};
}

interface Service {
  start(): Promise<void>;
  close(): Promise<void>;
}

// Starts a long-running service and stops it cleanly on SIGINT/SIGTERM:
// close() then exit 0. A second signal exits at once; a close() that takes
// longer than forceAfterMs (a drain deadline plus slack) too.
async function serve(prefix: string, logger: Logger, service: Service, onReady?: () => void, forceAfterMs = 15_000): Promise<void> {
  let stopping = false;
  let startDone: Promise<unknown> = Promise.resolve();
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting without waiting");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const force = setTimeout(() => {
      logger.error({ ms: forceAfterMs }, "shutdown took too long: exiting");
      process.exit(1);
    }, forceAfterMs);
    force.unref();
    void startDone
      .catch(() => undefined)
      .then(() => service.close())
      .then(() => shutdownTracing(3_000))
      .then(
        () => process.exit(0),
        (err: unknown) => fail(prefix, err),
      );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.on("uncaughtException", (err) => {
    logger.fatal({ err }, "uncaught exception");
    void fail(prefix, err);
  });
  process.on("unhandledRejection", (err) => {
    logger.fatal({ err }, "unhandled promise rejection");
    void fail(prefix, err);
  });
  startDone = service.start();
  await startDone;
  if (!stopping) onReady?.();
}

// `get` has no structured log: tracing problems are one stderr line each.
function getTracingLog(prefix: string): TracingLog {
  return {
    warn: (obj, msg) => void process.stderr.write(`${prefix}: ${msg} ${JSON.stringify(obj)}\n`),
    info: () => undefined,
  };
}

function timeoutText(cmd: Command): string | undefined {
  const raw = cmd.getOptionValueSource("timeout") === "cli" ? cmd.opts<{ timeout?: string }>().timeout : process.env[envName("GET", "timeout")];
  if (raw === undefined || raw.trim() === "") return undefined;
  const t = raw.trim();
  return /^\d+(\.\d+)?$/.test(t) ? `${t}ms` : t;
}

function makeGetCommand(name: string, prefix: string): Command {
  const cmd = new Command(name)
    .description("download a URL through the local daemon (dfget)")
    .argument("<url>", "http(s) URL to download")
    .configureOutput(usageOutput(prefix))
    .exitOverride()
    .showSuggestionAfterError(true);
  addSchemaOptions(cmd, getSchema, {
    keepCommas: ["header"],
    placeholders: { output: "file", header: "header", daemon: "url", filter: "param", pieceLength: "size" },
  });
  addConfigFileOption(cmd);
  cmd.addHelpText("after", envHelp(getSchema, "GET", true) + `\n\nExample:\n  ${name === "dfget" ? "dfget" : "damselfly get"} https://example.com/big.iso -O /tmp/big.iso`);
  cmd.action(
    withErrors(prefix, async (url: string, _opts: unknown, self: Command) => {
      const config = loadCommandConfig(self, getSchema, "GET");
      const ac = new AbortController();
      const interrupt = () => ac.abort();
      process.once("SIGINT", interrupt);
      process.once("SIGTERM", interrupt);
      await initTracing("damselfly-get", getTracingLog(prefix));
      const { runGet } = await import("./get.js");
      const text = timeoutText(self);
      await runGet(url, config, {
        stdout: process.stdout,
        stderr: process.stderr,
        prefix,
        signal: ac.signal,
        ...(text !== undefined ? { timeoutText: text } : {}),
      });
      await shutdownTracing(2_000);
      await flushStdio();
      process.exit(0);
    }),
  );
  return cmd;
}

// `damselfly cache list|rm|prune`: the local daemon's stored tasks.
function makeCacheCommand(): Command {
  const prefix = "damselfly cache";
  const cache = new Command("cache").description("list, remove or prune the tasks the local daemon stores (its disk GC, now)").configureOutput(usageOutput(prefix)).exitOverride();
  const sub = (name: string, description: string): Command => {
    const c = cache.command(name).description(description).configureOutput(usageOutput(prefix)).exitOverride();
    addSchemaOptions(c, cacheSchema, { placeholders: { daemon: "url" } });
    addConfigFileOption(c);
    return c;
  };
  const io = { stdout: process.stdout };
  const done = async () => {
    await flushStdio();
    process.exit(0);
  };
  sub("list", "stored tasks: id, state, size, pieces, disk use, last access, holders, URL; and Damselfly's total")
    .option("--json", "machine-readable output")
    .action(
      withErrors(prefix, async (opts: { json?: boolean }, self: Command) => {
        const { cacheList } = await import("./cache.js");
        await cacheList(loadCommandConfig(self, cacheSchema, "CACHE"), opts.json === true, io);
        await done();
      }),
    );
  sub("rm", "remove tasks; refuses (DF_ERR_TASK_IN_USE, exit 5) a task being downloaded, read or uploaded unless --force")
    .argument("<task-id...>", "task IDs as `cache list` shows them")
    .option("--force", "also remove a task in use (stops its download and readers)")
    .action(
      withErrors(prefix, async (ids: string[], opts: { force?: boolean }, self: Command) => {
        const { cacheRemove } = await import("./cache.js");
        await cacheRemove(loadCommandConfig(self, cacheSchema, "CACHE"), ids, opts.force === true, io);
        await done();
      }),
    );
  sub("prune", "run the disk GC now: the configured TTL and watermarks, or --all / --older-than / --to (tasks in use are kept)")
    .option("--all", "every task not in use")
    .option("--older-than <duration>", "tasks not accessed for this long (e.g. 30m, 2h)")
    .option("--to <size>", "least recently used first until Damselfly's files take at most this (e.g. 10GiB)")
    .action(
      withErrors(prefix, async (opts: { all?: boolean; olderThan?: string; to?: string }, self: Command) => {
        const { cachePrune } = await import("./cache.js");
        await cachePrune(loadCommandConfig(self, cacheSchema, "CACHE"), opts, io);
        await done();
      }),
    );
  cache.addHelpText("after", envHelp(cacheSchema, "CACHE", true));
  return cache;
}

function yamlValue(type: string, v: unknown): unknown {
  return type === "duration" ? formatDuration(v as number) : v;
}

function rootCommand(): Command {
  return new Command("damselfly")
    .description("P2P file distribution: scheduler, seed peer, peer daemon and a dfget-style client")
    .version(version(), "-V, --version")
    .configureOutput(usageOutput("damselfly"))
    .exitOverride()
    .showSuggestionAfterError(true)
    .enablePositionalOptions();
}

// `damselfly get`: only the command it runs. Many gets start at once on a
// node (every container of a job), and building every other command's
// options was ~15% of a get's JavaScript at start-up (~5% of its CPU).
function getProgram(): Command {
  return rootCommand().addCommand(makeGetCommand("get", "damselfly get"));
}

export async function buildProgram(): Promise<Command> {
  const program = rootCommand();

  // scheduler
  const scheduler = program.command("scheduler").description("run the scheduler (assigns parents to peers)");
  addSchemaOptions(scheduler, schedulerSchema);
  addConfigFileOption(scheduler);
  scheduler.addHelpText("after", envHelp(schedulerSchema, "SCHEDULER", true));
  scheduler.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const config = loadCommandConfig(self, schedulerSchema, "SCHEDULER");
      const logger = createLogger(config.logLevel as LogLevel);
      await initTracing("damselfly-scheduler", logger);
      const { Scheduler } = await import("../scheduler/index.js");
      const s = new Scheduler({ config, logger, ...clusterToken() });
      await serve("damselfly", logger, s, () => logger.info({ listen: formatHostPort(s.address) }, "scheduler ready"));
    }),
  );

  // daemon
  const daemon = program.command("daemon").description("run a peer daemon (or a seed peer with --seed)");
  addSchemaOptions(daemon, daemonSchema, { placeholders: { scheduler: "host:port", dataDir: "dir" } });
  addConfigFileOption(daemon);
  daemon.addHelpText("after", envHelp(daemonSchema, "DAEMON", true));
  daemon.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const config = loadCommandConfig(self, daemonSchema, "DAEMON");
      const logger = createLogger(config.logLevel as LogLevel);
      await initTracing(config.seed ? "damselfly-seed-peer" : "damselfly-daemon", logger);
      const { Daemon } = await import("../peer/index.js");
      // The daemon logs its own "daemon ready" line once listening; close()
      // drains uploads for up to shutdownTimeout.
      await serve("damselfly", logger, new Daemon({ config, logger, ...clusterToken() }), undefined, config.shutdownTimeout + 15_000);
    }),
  );

  // manager
  const manager = program.command("manager").description("run the manager (control plane: REST API, console, preheat jobs)");
  addSchemaOptions(manager, managerSchema, { placeholders: { database: "url", dataDir: "dir" } });
  addConfigFileOption(manager);
  manager.addHelpText("after", envHelp(managerSchema, "MANAGER", true) + "\n\nDAMSELFLY_ADMIN_PASSWORD sets the root user's password on first start (else one is generated and printed once).");
  manager.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const config = loadCommandConfig(self, managerSchema, "MANAGER");
      const logger = createLogger(config.logLevel as LogLevel);
      const { Manager } = await import("../manager/index.js");
      const adminPassword = process.env.DAMSELFLY_ADMIN_PASSWORD;
      // Not passed on to anything this process starts.
      delete process.env.DAMSELFLY_ADMIN_PASSWORD;
      await serve("damselfly", logger, new Manager({ config, logger, ...clusterToken(), ...(adminPassword !== undefined ? { adminPassword } : {}) }));
    }),
  );

  // preheat
  const preheat = program.command("preheat").description("preheat an image or a file URL into the seed peers through the manager").argument("<image-or-url>", "image reference (registry/repo:tag) or http(s) URL");
  addSchemaOptions(preheat, preheatSchema, { keepCommas: ["header"], placeholders: { manager: "url", header: "header", clusterId: "id" } });
  addConfigFileOption(preheat);
  preheat.addHelpText("after", envHelp(preheatSchema, "PREHEAT", true) + "\n\nExample:\n  DAMSELFLY_PREHEAT_TOKEN=dfp_... damselfly preheat registry.example.com/app:1.2 --scope all_seed_peers");
  preheat.action(
    withErrors("damselfly preheat", async (target: string, _opts: unknown, self: Command) => {
      const config = loadCommandConfig(self, preheatSchema, "PREHEAT");
      const { runPreheat } = await import("./preheat.js");
      await runPreheat(target, config, { stdout: process.stdout, stderr: process.stderr });
      await flushStdio();
      process.exit(0);
    }),
  );

  // get
  const get = makeGetCommand("get", "damselfly get");
  program.addCommand(get);

  // up
  const up = program
    .command("up")
    .description("run a manager, a scheduler, a seed peer and a peer daemon in one process, on fixed local ports")
    .option("--data-dir <dir>", "base directory for the seed and peer data (default: ~/.damselfly/up)")
    .option("--scheduler-port <port>", `scheduler port (default: ${DEFAULT_SCHEDULER_PORT})`)
    .option("--demo-port <port>", "port of the built-in demo origin serving /demo.bin (default: 65080)")
    .option("--no-demo", "do not start the demo origin")
    .option("--manager-port <port>", "manager (console, API) port (default: 8080)")
    .option("--no-manager", "do not start the manager")
    .addOption(new Option("--log-level <level>", "log level (default: warn)").choices([...LOG_LEVELS]));
  up.action(
    withErrors("damselfly", async (opts: { dataDir?: string; schedulerPort?: string; demoPort?: string; demo: boolean; managerPort?: string; manager: boolean; logLevel?: string }) => {
      const { startUp, readyBanner, defaultUpDataDir, DEFAULT_DEMO_PORT, DEFAULT_MANAGER_PORT } = await import("./up.js");
      const managerPort = opts.managerPort === undefined ? DEFAULT_MANAGER_PORT : Number(opts.managerPort);
      if (!Number.isInteger(managerPort) || managerPort < 0 || managerPort > 65535) {
        throw new DamselflyError("DF_ERR_USAGE", `invalid --manager-port ${JSON.stringify(opts.managerPort)}: expected 0..65535`);
      }
      const adminPassword = process.env.DAMSELFLY_ADMIN_PASSWORD;
      delete process.env.DAMSELFLY_ADMIN_PASSWORD;
      const demoPort = opts.demoPort === undefined ? DEFAULT_DEMO_PORT : Number(opts.demoPort);
      if (!Number.isInteger(demoPort) || demoPort < 0 || demoPort > 65535) {
        throw new DamselflyError("DF_ERR_USAGE", `invalid --demo-port ${JSON.stringify(opts.demoPort)}: expected 0..65535`);
      }
      const port = opts.schedulerPort === undefined ? DEFAULT_SCHEDULER_PORT : Number(opts.schedulerPort);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new DamselflyError("DF_ERR_USAGE", `invalid --scheduler-port ${JSON.stringify(opts.schedulerPort)}: expected 0..65535`);
      }
      const dataDir = opts.dataDir ?? defaultUpDataDir();
      const logLevel = (opts.logLevel ?? "warn") as LogLevel;
      const logger = createLogger(logLevel);
      let handle: Awaited<ReturnType<typeof startUp>> | undefined;
      await serve(
        "damselfly",
        logger,
        {
          start: async () => {
            handle = await startUp(
              { dataDir, schedulerPort: port, logLevel, ...(opts.demo ? { demoPort } : {}), ...(opts.manager ? { managerPort } : {}), ...(adminPassword ? { adminPassword } : {}), ...clusterToken() },
              logger,
            );
          },
          close: async () => {
            process.stdout.write("damselfly up: stopping\n");
            await handle?.close();
          },
        },
        () => process.stdout.write(readyBanner(handle!, dataDir) + "\n"),
      );
    }),
  );

  // config print
  const config = program.command("config").description("inspect configuration");
  config
    .command("print")
    .description("print the effective configuration (defaults < --config file < env) as YAML")
    .addArgument(new Argument("<component>", "which configuration").choices(Object.keys(COMPONENTS)))
    .option("--config <file>", "YAML config file to merge")
    .action(
      withErrors("damselfly", async (component: keyof typeof COMPONENTS, opts: { config?: string }) => {
        const { schema, envPrefix } = COMPONENTS[component];
        const cfg = loadConfig(schema, { ...(opts.config ? { file: opts.config } : {}), env: process.env, envPrefix }) as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        for (const [k, f] of Object.entries(schema)) out[k] = yamlValue(f.type, cfg[k]);
        const header = `# effective ${component} configuration (defaults < ${opts.config ?? "no config file"} < DAMSELFLY_${envPrefix}_* env)\n`;
        const { stringify: toYaml } = await import("yaml");
        process.stdout.write(header + toYaml(out));
      }),
    );

  const { makeInitCommand } = await import("./init.js");
  program.addCommand(makeInitCommand());
  program.addCommand(makeCacheCommand());

  return program;
}

export async function run(argv: string[] = process.argv.slice(2), opts: RunOptions = {}): Promise<void> {
  const dfget = opts.dfget === true;
  // `damselfly --help | head`: a reader that went away is not an error, unless
  // a command (get -O -) handles stdout failures itself.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE" && process.stdout.listenerCount("error") === 1) process.exit(0);
  });
  const program = dfget ? makeGetCommand("dfget", "dfget").version(version(), "-V, --version") : argv[0] === "get" ? getProgram() : await buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were
      // already printed by usageOutput.
      await flushStdio();
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    await fail(dfget ? "dfget" : "damselfly", err);
  }
}

// `node dist/src/cli/main.js ...`
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void run();
}
