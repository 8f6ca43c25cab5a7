// `damselfly get` and `dfget`: download a URL through the local daemon.
import { Command } from "commander";
import { envName } from "../../common/config.js";
import { getSchema } from "../../common/schemas.js";
import { initTracing, shutdownTracing, type TracingLog } from "../../common/trace.js";
import { loadCommandConfig } from "../options.js";
import { flushStdio, usageOutput, withErrors, withSchema } from "./kit.js";

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

export function makeGetCommand(name: string, prefix: string): Command {
  const cmd = new Command(name)
    .description("download a URL through the local daemon (dfget)")
    .argument("<url>", "http(s) URL, s3://BUCKET/KEY or hf://[datasets/|spaces/]OWNER/REPO/PATH to download (with -r: hf://OWNER/REPO[/FOLDER])")
    .configureOutput(usageOutput(prefix))
    .exitOverride()
    .showSuggestionAfterError(true);
  withSchema(
    cmd,
    getSchema,
    "GET",
    {
      keepCommas: ["header", "include", "exclude"],
      placeholders: {
        output: "file",
        header: "header",
        daemon: "url",
        filter: "param",
        pieceLength: "size",
        s3Endpoint: "url",
        s3Region: "region",
        hfRevision: "rev",
        hfEndpoint: "url",
        include: "glob",
        exclude: "glob",
      },
    },
    `\n\nExample:\n  ${name === "dfget" ? "dfget" : "damselfly get"} https://example.com/big.iso -O /tmp/big.iso`,
  );
  cmd.action(
    withErrors(prefix, async (url: string, _opts: unknown, self: Command) => {
      // A get naming no s3/hub endpoint takes its daemon's (source.s3, source.hf).
      const config = await (await import("../source-defaults.js")).withSourceDefaults(url, loadCommandConfig(self, getSchema, "GET"));
      const ac = new AbortController();
      const interrupt = () => ac.abort();
      process.once("SIGINT", interrupt);
      process.once("SIGTERM", interrupt);
      await initTracing("damselfly-get", getTracingLog(prefix));
      const { runGet } = await import("../get.js");
      const text = timeoutText(self);
      const io = { stdout: process.stdout, stderr: process.stderr, prefix, signal: ac.signal, ...(text !== undefined ? { timeoutText: text } : {}) };
      if (config.recursive) await (await import("../get-recursive.js")).runRecursiveGet(url, config, io);
      else await runGet(url, config, io);
      await shutdownTracing(2_000);
      await flushStdio();
      process.exit(0);
    }),
  );
  return cmd;
}
