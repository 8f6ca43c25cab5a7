// docs/reference/cli.md: the commander program that src/cli/main.ts builds,
// walked command by command (nothing is run).
import type { Command } from "commander";
import { code, generatedHeader, table } from "./markdown.js";

function usage(cmd: Command, parents: string[]): string {
  const args = cmd.registeredArguments.map((a) => {
    const n = a.name() + (a.variadic ? "..." : "");
    return a.required ? `<${n}>` : `[${n}]`;
  });
  const opts = cmd.options.length > 0 ? ["[options]"] : [];
  const sub = cmd.commands.length > 0 ? ["<command>"] : [];
  return [...parents, cmd.name(), ...opts, ...sub, ...args].join(" ");
}

function section(cmd: Command, parents: string[]): string[] {
  const title = [...parents, cmd.name()].join(" ");
  const out = [`## ${title}`, "", cmd.description(), "", "```", usage(cmd, parents), "```", ""];
  if (cmd.registeredArguments.length > 0) {
    const rows = cmd.registeredArguments.map((a) => [code(a.name()), a.description + (a.argChoices ? ` (one of ${a.argChoices.join(", ")})` : "")]);
    out.push(table(["argument", "description"], rows), "");
  }
  const options = cmd.options.filter((o) => !o.hidden);
  if (options.length > 0) {
    const rows = options.map((o) => [code(o.flags), o.description + (o.argChoices ? ` (one of ${o.argChoices.join(", ")})` : "")]);
    out.push(table(["option", "description"], rows), "");
  }
  for (const sub of cmd.commands) out.push(...section(sub, [...parents, cmd.name()]));
  return out;
}

export function cliPage(program: Command): string {
  const parts = [
    generatedHeader("Command line", ["src/cli/main.ts", "src/cli/options.ts", "src/common/schemas.ts"]),
    "`damselfly <command> --help` prints the same. `dfget` is `damselfly get`. Every option that comes from a",
    "config schema can also be set in YAML or the environment: [config.md](config.md).",
    "",
  ];
  for (const cmd of program.commands) parts.push(...section(cmd, [program.name()]));
  return parts.join("\n");
}
