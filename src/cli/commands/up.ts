// `damselfly up`: a manager, a scheduler, a seed peer and a peer daemon in
// one process, on fixed local ports.
import { Command } from "commander";
import { createLogger, type LogLevel } from "../../common/logger.js";
import { ADMIN_PASSWORD_ENV, upSchema } from "../../common/schemas.js";
import { DamselflyError } from "../../common/errors.js";
import { loadWithNotices, serve, withErrors, withSchema } from "./kit.js";

// `up` always reported a bad flag (a port out of range, an unknown log
// level) as a usage error, exit 2.
function flagErrorsAreUsage<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof DamselflyError && err.code === "DF_ERR_CONFIG" && err.message.startsWith("flag --"))
      throw new DamselflyError("DF_ERR_USAGE", err.message, { cause: err });
    throw err;
  }
}

export function upCommand(): Command {
  const cmd = withSchema(
    new Command("up").description("run a manager, a scheduler, a seed peer and a peer daemon in one process, on fixed local ports"),
    upSchema,
    "UP",
    { placeholders: { dataDir: "dir", schedulerPort: "port", demoPort: "port", managerPort: "port", logLevel: "level" } },
  );
  return cmd.action(
    withErrors("damselfly", async (_opts: unknown, self: Command) => {
      const { config, logNotices } = flagErrorsAreUsage(() => loadWithNotices(self, upSchema, "UP"));
      delete process.env[ADMIN_PASSWORD_ENV];
      const { startUp, readyBanner } = await import("../up.js");
      const logger = createLogger(config.logLevel as LogLevel);
      logNotices(logger);
      let handle: Awaited<ReturnType<typeof startUp>> | undefined;
      await serve(
        "damselfly",
        logger,
        {
          start: async () => {
            handle = await startUp(config, logger);
          },
          close: async () => {
            process.stdout.write("damselfly up: stopping\n");
            await handle?.close();
          },
        },
        () => process.stdout.write(readyBanner(handle!, config.dataDir) + "\n"),
      );
    }),
  );
}
