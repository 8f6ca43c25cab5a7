// Runs a tool of the node's container runtime (dockerd, containerd, the
// restart command) and collects what it printed: `init` asks runtimes about
// themselves and restarts them (the restart command is the operator's own
// shell text, run as given: nothing from a file or a request is put in it).
import { execFile } from "node:child_process";

export interface ToolRun {
  // Exit status; null when it did not exit by itself (not found, killed).
  code: number | null;
  // The signal that ended it, when one did (its timeout's SIGKILL included).
  signal: string | null;
  stdout: string;
  stderr: string;
  // Why it could not be run or was stopped (ENOENT, a timeout), if so.
  error?: string;
}

export interface ToolOptions {
  timeoutMs: number;
  // Output kept per stream; more is not collected but the tool runs on.
  maxOutput?: number;
}

const DEFAULT_MAX_OUTPUT = 64 << 10;

export function runTool(bin: string, args: readonly string[], o: ToolOptions): Promise<ToolRun> {
  const max = o.maxOutput ?? DEFAULT_MAX_OUTPUT;
  return new Promise((resolve) => {
    // maxBuffer far above what is kept: a chatty restart command must not be
    // killed for its output.
    const opts = { timeout: o.timeoutMs, killSignal: "SIGKILL" as const, maxBuffer: 16 << 20, encoding: "utf8" as const };
    execFile(bin, [...args], opts, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
      resolve({
        code: e ? (typeof e.code === "number" ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout: String(stdout).slice(0, max),
        stderr: String(stderr).slice(0, max),
        ...(e && typeof e.code !== "number" ? { error: e.message } : {}),
      });
    });
  });
}
