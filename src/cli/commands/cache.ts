// `damselfly cache list|rm|prune`: the local daemon's stored tasks.
import { Command } from "commander";
import { cacheSchema } from "../../common/schemas.js";
import { addConfigFileOption, addSchemaOptions, envHelp, loadCommandConfig } from "../options.js";
import { exitOk, usageOutput, withErrors } from "./kit.js";

export function cacheCommand(): Command {
  const prefix = "damselfly cache";
  const cache = new Command("cache")
    .description("list, remove or prune the tasks the local daemon stores (its disk GC, now)")
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
  cache.addHelpText("after", envHelp(cacheSchema, "CACHE", true));
  return cache;
}
