// `damselfly cache list|rm|prune|import|export|stat`: the local daemon's
// stored tasks, and files with no origin.
import { Command } from "commander";
import { cacheSchema, type CacheConfig } from "../../common/schemas.js";
import { addConfigFileOption, addSchemaOptions, envHelp, loadCommandConfig } from "../options.js";
import { exitOk, usageOutput, withErrors } from "./kit.js";

export function cacheCommand(): Command {
  const prefix = "damselfly cache";
  const cache = new Command("cache")
    .description("list, remove or prune the tasks the local daemon stores (its disk GC, now); import and export files with no origin")
    .configureOutput(usageOutput(prefix))
    .exitOverride();
  const sub = (name: string, description: string): Command => {
    const c = cache.command(name).description(description).configureOutput(usageOutput(prefix)).exitOverride();
    addSchemaOptions(c, cacheSchema, { placeholders: { daemon: "url" } });
    addConfigFileOption(c);
    return c;
  };
  const io = { stdout: process.stdout };
  const config = (self: Command) => loadCommandConfig(self, cacheSchema, "CACHE");
  sub("list", "stored tasks: id, state, size, pieces, disk use, last access, holders, URL; and Damselfly's total")
    .option("--json", "machine-readable output")
    .action(
      withErrors(prefix, async (opts: { json?: boolean }, self: Command) => {
        const { cacheList } = await import("../cache.js");
        await cacheList(config(self), opts.json === true, io);
        await exitOk();
      }),
    );
  sub("rm", "remove tasks; refuses (DF_ERR_TASK_IN_USE, exit 5) a task being downloaded, read or uploaded unless --force")
    .argument("<task-id...>", "task IDs as `cache list` shows them")
    .option("--force", "also remove a task in use (stops its download and readers)")
    .action(
      withErrors(prefix, async (ids: string[], opts: { force?: boolean }, self: Command) => {
        const { cacheRemove } = await import("../cache.js");
        await cacheRemove(config(self), ids, opts.force === true, io);
        await exitOk();
      }),
    );
  sub("prune", "run the disk GC now: the configured TTL and watermarks, or --all / --older-than / --to (tasks in use are kept)")
    .option("--all", "every task not in use")
    .option("--older-than <duration>", "tasks not accessed for this long (e.g. 30m, 2h)")
    .option("--to <size>", "least recently used first until Damselfly's files take at most this (e.g. 10GiB)")
    .action(
      withErrors(prefix, async (opts: { all?: boolean; olderThan?: string; to?: string }, self: Command) => {
        const { cachePrune } = await import("../cache.js");
        await cachePrune(config(self), opts, io);
        await exitOk();
      }),
    );
  addTransferCommands(sub, prefix, config);
  cache.addHelpText("after", envHelp(cacheSchema, "CACHE", true));
  return cache;
}

// `cache import|export|stat`: files with no origin (cache-transfer.ts).
function addTransferCommands(sub: (name: string, description: string) => Command, prefix: string, config: (self: Command) => CacheConfig): void {
  // Ctrl-C or SIGTERM stops an import or export cleanly: the daemon drops a
  // partial import, and an export's temporary file is removed.
  const tio = () => {
    const ac = new AbortController();
    const interrupt = () => ac.abort();
    process.once("SIGINT", interrupt);
    process.once("SIGTERM", interrupt);
    return { stdout: process.stdout, stderr: process.stderr, signal: ac.signal };
  };
  sub("import", "store a file with no origin in the cluster; prints its task ID (from the content's sha256) on stdout")
    .argument("<file>", "the file to import (streamed to the daemon)")
    .option("--replicas <n>", "copies the scheduler places on other hosts so the file outlives this one (0..16)", "1")
    .option("--ttl <duration>", "keep the copies this long after their last access (default: each daemon's task TTL)")
    .option("--replica-timeout <duration>", "how long to wait for the replicas (default 10m)")
    .action(
      withErrors(prefix, async (file: string, opts: { replicas?: string; ttl?: string; replicaTimeout?: string }, self: Command) => {
        const { cacheImport } = await import("../cache-transfer.js");
        await cacheImport(config(self), file, opts, tio());
        await exitOk();
      }),
    );
  sub("export", "fetch an imported file by its task ID from the cluster (checked against its sha256 before it is put in place)")
    .argument("<task-id>", "the ID `cache import` printed")
    .option("-O, --output <file>", "where to write it")
    .action(
      withErrors(prefix, async (id: string, opts: { output?: string }, self: Command) => {
        const { cacheExport } = await import("../cache-transfer.js");
        await cacheExport(config(self), id, opts.output, tio());
        await exitOk();
      }),
    );
  sub("stat", "an imported task: this daemon's copy (state, size, pieces) and how many peers hold it; DF_ERR_TASK_NOT_FOUND if none")
    .argument("<task-id>", "the ID `cache import` printed")
    .option("--json", "machine-readable output")
    .action(
      withErrors(prefix, async (id: string, opts: { json?: boolean }, self: Command) => {
        const { cacheStat } = await import("../cache-transfer.js");
        await cacheStat(config(self), id, opts.json === true, tio());
        await exitOk();
      }),
    );
}
