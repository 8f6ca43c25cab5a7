// `damselfly config print <component>`: the effective configuration, nested
// as in the YAML file; secrets show only whether they are set.
import { Argument, Command } from "commander";
import { fieldsOf, loadConfig, valueAt, type Schema } from "../../common/config.js";
import { cacheSchema, daemonSchema, getSchema, managerSchema, preheatSchema, schedulerSchema, upSchema } from "../../common/schemas.js";
import { formatDuration } from "../format.js";
import { withErrors } from "./kit.js";

export const COMPONENTS: Record<string, { schema: Schema; envPrefix: string }> = {
  scheduler: { schema: schedulerSchema, envPrefix: "SCHEDULER" },
  daemon: { schema: daemonSchema, envPrefix: "DAEMON" },
  get: { schema: getSchema, envPrefix: "GET" },
  manager: { schema: managerSchema, envPrefix: "MANAGER" },
  preheat: { schema: preheatSchema, envPrefix: "PREHEAT" },
  cache: { schema: cacheSchema, envPrefix: "CACHE" },
  up: { schema: upSchema, envPrefix: "UP" },
};

// The nested view of a loaded config as it is written in YAML.
export function printable(schema: Schema, config: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { path, field } of fieldsOf(schema)) {
    const v = valueAt(config, path);
    const shown = field.secret ? (v ? "(set)" : "") : field.type === "duration" ? formatDuration(v as number) : v;
    const keys = path.split(".");
    let at = out;
    for (const k of keys.slice(0, -1)) at = (at[k] ??= {}) as Record<string, unknown>;
    at[keys[keys.length - 1]!] = shown;
  }
  return out;
}

export function configCommand(): Command {
  const config = new Command("config").description("inspect configuration");
  config
    .command("print")
    .description("print the effective configuration (defaults < --config file < env) as YAML")
    .addArgument(new Argument("<component>", "which configuration").choices(Object.keys(COMPONENTS)))
    .option("--config <file>", "YAML config file to merge")
    .action(
      withErrors("damselfly", async (component: string, opts: { config?: string }) => {
        const { schema, envPrefix } = COMPONENTS[component]!;
        const warn = (m: string) => void process.stderr.write(`damselfly: warning: ${m}\n`);
        const cfg = loadConfig(schema, { ...(opts.config ? { file: opts.config } : {}), env: process.env, envPrefix, warn });
        const header = `# effective ${component} configuration (defaults < ${opts.config ?? "no config file"} < DAMSELFLY_${envPrefix}_* env)\n`;
        const { stringify: toYaml } = await import("yaml");
        process.stdout.write(header + toYaml(printable(schema, cfg)));
      }),
    );
  return config;
}
