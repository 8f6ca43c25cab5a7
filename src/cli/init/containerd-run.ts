// Carries out an onboarding plan: the hosts.toml files are always written
// (harmless, and read at once when config_path covers them); config.toml is
// edited and containerd restarted only with --restart, never otherwise. The
// report says what was found, done and still needed, as JSON or as lines with
// a one-line summary last.
import { DamselflyError } from "../../common/errors.js";
import { editConfig, tableHeader } from "./containerd-edit.js";
import type { Detection, FileEdit, Issue, Plan } from "./containerd-onboard.js";
import { runTool } from "./run-tool.js";
import { applyChanges, type FileChange, type Output, readExisting } from "./files.js";

export interface RunOptions {
  restart: boolean;
  restartCommand: string;
  dryRun: boolean;
  json: boolean;
  out: Output;
}

export type Status = "configured" | "restarted" | "restart-required" | "action-required";

export interface Report {
  status: Status;
  summary: string;
  containerd: { version: string; versionSource: string };
  config: { file: string; exists: boolean; files: string[]; version: number; layout: string; registryTable: string };
  configPath: { value: string; source: string; dirs: string[] };
  imagePull: { transferService: boolean; reason: string };
  hostsDir: string;
  issues: Issue[];
  edits: (FileEdit & { applied: boolean })[];
  restart: { needed: boolean; done: boolean; command?: string; why?: string; output?: string };
  // The file actions in order ("wrote: <path>", "backup: <path>", ...).
  actions: string[];
}

const RESTART_TIMEOUT_MS = 120_000;
const MAX_OUTPUT = 8 << 10;

// The operator's --restart-command, as written (their shell syntax).
async function runRestart(command: string): Promise<{ ok: boolean; output: string }> {
  const r = await runTool("/bin/sh", ["-c", command], { timeoutMs: RESTART_TIMEOUT_MS, maxOutput: MAX_OUTPUT });
  const output = `${r.stdout}${r.stderr}`.slice(0, MAX_OUTPUT).trim();
  return { ok: r.code === 0, output: output || r.error || (r.signal ? `killed by ${r.signal}` : `exit ${r.code}`) };
}

// One FileChange per edited file, every edit of that file applied.
async function configChanges(d: Detection, edits: readonly FileEdit[]): Promise<FileChange[]> {
  const byFile = new Map<string, FileEdit[]>();
  for (const e of edits) byFile.set(e.file, [...(byFile.get(e.file) ?? []), e]);
  const changes: FileChange[] = [];
  for (const [file, es] of byFile) {
    const existing = await readExisting(file);
    // A file we create starts with the version the tables were chosen for.
    const text = existing ?? `version = ${d.configVersion}\n`;
    changes.push({ path: file, content: editConfig(file, text, es) });
  }
  return changes;
}

function collect(actions: string[]): Output {
  return { write: (s: string) => actions.push(...s.split("\n").filter((l) => l !== "")) };
}

function summarize(r: Omit<Report, "summary">): string {
  const where = `hosts.toml in ${r.hostsDir}`;
  switch (r.status) {
    case "configured":
      return `containerd ${r.containerd.version}: ${where}, read on every pull: no restart needed (config_path ${r.configPath.source === "default" ? "default" : "set"}: ${r.configPath.value})`;
    case "restarted":
      return `containerd ${r.containerd.version}: ${where}; config.toml changed (${r.edits.map((e) => e.key).join(", ")}) and containerd restarted because it reads config.toml only at start`;
    case "restart-required":
      return `containerd ${r.containerd.version}: ${where}, but containerd will not read them until config.toml changes and containerd restarts: ${r.issues.map((i) => i.code).join(", ")} (run again with --restart, or fix by hand)`;
    default:
      return `containerd ${r.containerd.version}: ${where}, but action is needed by hand: ${r.issues.map((i) => `${i.code}: ${i.fix}`).join("; ")}`;
  }
}

function printHuman(r: Report, out: Output): void {
  for (const a of r.actions) out.write(`${a}\n`);
  out.write(
    `containerd: ${r.containerd.version} (${r.containerd.versionSource}); config ${r.config.file}${r.config.exists ? "" : " (missing)"}, layout ${r.config.layout} ${r.config.registryTable}\n`,
  );
  out.write(
    `config_path: ${r.configPath.source === "unset" ? "not set" : `${r.configPath.value} (${r.configPath.source})`}; image pull: ${r.imagePull.reason}\n`,
  );
  for (const i of r.issues) out.write(`issue ${i.code}: ${i.message}\n  fix: ${i.fix}\n`);
  if (r.restart.done) out.write(`restarted containerd (${r.restart.command}): ${r.restart.why}\n`);
  out.write(`${r.summary}\n`);
}

export async function carryOut(d: Detection, p: Plan, hostsFiles: FileChange[], o: RunOptions): Promise<Report> {
  const actions: string[] = [];
  const sink = o.json ? collect(actions) : o.out;
  await applyChanges(hostsFiles, { dryRun: o.dryRun, out: sink });
  const doEdits = o.restart && !p.blocked && p.edits.length > 0;
  const changes = doEdits ? await configChanges(d, p.edits) : [];
  if (changes.length > 0) await applyChanges(changes, { dryRun: o.dryRun, out: sink });
  const why = p.issues.map((i) => i.code).join(", ");
  const restart: Report["restart"] = { needed: p.restartNeeded, done: false };
  let restartFailed = false;
  if (doEdits && !o.dryRun) {
    const r = await runRestart(o.restartCommand);
    Object.assign(restart, { command: o.restartCommand, why: `containerd reads config.toml only at start (${why})`, output: r.output });
    restart.done = r.ok;
    restartFailed = !r.ok;
  }
  const status: Status = p.blocked ? "action-required" : !p.restartNeeded ? "configured" : restart.done ? "restarted" : "restart-required";
  const partial: Omit<Report, "summary"> = {
    status,
    containerd: { version: d.version.text, versionSource: d.version.source },
    config: {
      file: d.configFile,
      exists: d.configExists,
      files: d.files.map((f) => f.path),
      version: d.configVersion,
      layout: d.layout,
      registryTable: tableHeader(d.cri.registryTable),
    },
    configPath: { value: d.configPath.raw, source: d.configPath.source, dirs: d.configPath.dirs },
    imagePull: d.pull,
    hostsDir: p.hostsDir,
    issues: p.issues,
    edits: p.edits.map((e) => ({ ...e, applied: doEdits && !o.dryRun })),
    restart,
    actions,
  };
  const report: Report = { ...partial, summary: summarize(partial) };
  if (o.json) o.out.write(`${JSON.stringify(report, null, 2)}\n`);
  else printHuman(report, o.out);
  if (restartFailed)
    throw new DamselflyError(
      "DF_ERR_RESTART_REQUIRED",
      `config.toml was changed but "${o.restartCommand}" failed (${restart.output}); restart containerd by hand`,
    );
  if (status === "restart-required") throw new DamselflyError("DF_ERR_RESTART_REQUIRED", report.summary);
  if (status === "action-required") throw new DamselflyError("DF_ERR_CONFIG", report.summary);
  return report;
}
