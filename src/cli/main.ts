// The `damselfly` command line: scheduler, daemon, manager, preheat, get, up,
// config print, init, cache. bin/damselfly and bin/dfget call run(); running
// this file directly works too. Each command is registered in commands/.
import { version } from "../common/version.js";
import { pathToFileURL } from "node:url";
import { Command, CommanderError } from "commander";
import { fail, flushStdio, usageOutput } from "./commands/kit.js";
import { makeGetCommand } from "./commands/get.js";

export interface RunOptions {
  // Behave as `dfget`: argv is what follows `damselfly get`.
  dfget?: boolean;
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
// node (every container of a job): building every other command's options
// is a share of its start-up (docs/decisions/cli-startup.md).
function getProgram(): Command {
  return rootCommand().addCommand(makeGetCommand("get", "damselfly get"));
}

export async function buildProgram(): Promise<Command> {
  const program = rootCommand();
  const [servers, { preheatCommand }, { upCommand }, { configCommand }, { makeInitCommand }, { cacheCommand }, { certsCommand }] = await Promise.all([
    import("./commands/servers.js"),
    import("./commands/preheat.js"),
    import("./commands/up.js"),
    import("./commands/config.js"),
    import("./init.js"),
    import("./commands/cache.js"),
    import("./commands/certs.js"),
  ]);
  // Commands that take the program's output and exit handling (usage errors
  // as "damselfly: DF_ERR_USAGE: ...", exit 2).
  const inheriting = [servers.schedulerCommand(), servers.daemonCommand(), servers.managerCommand(), preheatCommand()];
  for (const c of inheriting) program.addCommand(c.copyInheritedSettings(program));
  program.addCommand(makeGetCommand("get", "damselfly get"));
  program.addCommand(upCommand().copyInheritedSettings(program));
  const config = configCommand().copyInheritedSettings(program);
  for (const sub of config.commands) sub.copyInheritedSettings(config);
  program.addCommand(config);
  program.addCommand(makeInitCommand());
  program.addCommand(cacheCommand());
  program.addCommand(certsCommand());
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
