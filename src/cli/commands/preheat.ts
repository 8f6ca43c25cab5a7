// `damselfly preheat`: a preheat job through the manager.
import { Command } from "commander";
import { preheatSchema } from "../../common/schemas.js";
import { loadCommandConfig } from "../options.js";
import { exitOk, withErrors, withSchema } from "./kit.js";

export function preheatCommand(): Command {
  const cmd = new Command("preheat")
    .description("preheat an image or a file URL into the seed peers through the manager")
    .argument(
      "<image-or-url>",
      "image reference (registry/repo:tag), http(s) URL, s3://BUCKET/KEY or hf://OWNER/REPO/PATH (with -r: s3://BUCKET/PREFIX/, hf://OWNER/REPO[/FOLDER])",
    );
  withSchema(
    cmd,
    preheatSchema,
    "PREHEAT",
    {
      keepCommas: ["header", "include", "exclude"],
      placeholders: { manager: "url", header: "header", clusterId: "id", include: "glob", exclude: "glob", hfRevision: "rev" },
    },
    "\n\nExamples:\n  DAMSELFLY_PREHEAT_TOKEN=dfp_... damselfly preheat registry.example.com/app:1.2 --scope all_seed_peers\n  damselfly preheat -r hf://acme/llm --include '*.safetensors' --scope all_seed_peers",
  );
  return cmd.action(
    withErrors("damselfly preheat", async (target: string, _opts: unknown, self: Command) => {
      const config = loadCommandConfig(self, preheatSchema, "PREHEAT");
      const { runPreheat } = await import("../preheat.js");
      await runPreheat(target, config, { stdout: process.stdout, stderr: process.stderr });
      await exitOk();
    }),
  );
}
