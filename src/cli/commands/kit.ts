// What every command registration shares: the failure shape and exit codes,
// usage errors, the serve() lifecycle of long-running components, and the
// deprecation notices of loading a config.
import { Command } from "commander";
import type { Schema } from "../../common/config.js";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { shutdownTracing } from "../../common/trace.js";
import { addConfigFileOption, addSchemaOptions, envHelp, loadCommandConfig, type SchemaOptionsSettings } from "../options.js";
import type { ConfigOf } from "../../common/config.js";

// Waits until stdout and stderr have handed everything to the OS.
export async function flushStdio(): Promise<void> {
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
export async function fail(prefix: string, err: unknown): Promise<never> {
  const e = DamselflyError.from(err);
  process.stderr.write(`${prefix}: ${e.code}: ${e.message}\n`);
  // The failed get's spans are worth the most: send them (no-op when off).
  await shutdownTracing(2_000);
  await flushStdio();
  process.exit(e.exitCode);
}

// Commander prints usage errors through this: same shape as other failures.
export function usageOutput(prefix: string) {
  return {
    outputError: (str: string, write: (s: string) => void) => {
      const msg = str.trim().replace(/^error:\s*/i, "");
      write(`${prefix}: DF_ERR_USAGE: ${msg}\n`);
    },
  };
}

export function withErrors<A extends unknown[]>(prefix: string, fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      await fail(prefix, err);
    }
  };
}

export async function exitOk(): Promise<never> {
  await flushStdio();
  process.exit(0);
}

// Adds a schema's flags, --config and the env help footer to cmd.
export function withSchema(cmd: Command, schema: Schema, envPrefix: string, settings: SchemaOptionsSettings = {}, helpAfter = ""): Command {
  addSchemaOptions(cmd, schema, settings);
  addConfigFileOption(cmd);
  cmd.addHelpText("after", envHelp(schema, envPrefix, true) + helpAfter);
  return cmd;
}

// Loads a command's config; deprecation notices go to the logger the config
// itself chooses the level of, once it exists.
export function loadWithNotices<S extends Schema>(cmd: Command, schema: S, envPrefix: string): { config: ConfigOf<S>; logNotices(logger: Logger): void } {
  const notices: string[] = [];
  const config = loadCommandConfig(cmd, schema, envPrefix, { warn: (m) => notices.push(m) });
  return { config, logNotices: (logger) => notices.forEach((m) => logger.warn(m)) };
}

export interface Service {
  start(): Promise<void>;
  close(): Promise<void>;
}

// Starts a long-running service and stops it cleanly on SIGINT/SIGTERM:
// close() then exit 0. A second signal exits at once; a close() that takes
// longer than forceAfterMs (a drain deadline plus slack) too.
export async function serve(prefix: string, logger: Logger, service: Service, onReady?: () => void, forceAfterMs = 15_000): Promise<void> {
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
