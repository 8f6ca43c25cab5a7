// Shared plumbing for benchmarks: spawn our processes on loopback, wait for
// their "ready" log lines, and sample RSS. Benchmarks print figures; they do
// not assert (timed assertions belong nowhere).
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { schedulerPoolSize, usableCores } from "../src/cli/v8-pool.js";
import { BIN_DAMSELFLY, REPO_ROOT, spawnDamselfly as spawnProc, loopbackDaemonArgs } from "../test/helpers/procs.js";
import { makeFile } from "./make-file.js";

export const ROOT = REPO_ROOT;
export const BIN = BIN_DAMSELFLY;

// `--name value` from the command line (the last one wins), or the default.
export function opt(name: string, def: string): string {
  const args = process.argv.slice(2);
  const i = args.lastIndexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : def;
}

export interface Proc {
  child: ChildProcess;
  ready: Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

// Spawns `bin/damselfly args…` (the tests' spawnDamselfly) and resolves
// `ready` with the first JSON log line whose msg is `readyMsg`.
export function spawnDamselfly(args: string[], readyMsg: string, extraEnv: Record<string, string> = {}): Proc {
  const nodeArgs = args[0] === "scheduler" ? schedulerV8PoolArgs() : [];
  const p = spawnProc(args, { nodeArgs, env: extraEnv, inheritEnv: true, cwd: process.cwd() });
  const ready: Promise<Record<string, unknown>> = p.waitForLog(readyMsg, 20_000);
  ready.catch(() => undefined);
  return { child: p.child, ready, stop: () => p.stop("SIGTERM", 5_000).then(() => undefined) };
}

// A loopback cluster for a benchmark: an origin serving a fresh SIZE-byte
// file, a scheduler, and a factory of daemons (`--seed` among `args` for a
// seed peer) whose stores live under `dir`. Every process is added to `procs`
// so the caller's cleanup stops it.
export async function loopbackCluster(
  dir: string,
  size: number,
  procs: Array<{ stop(): Promise<void> | void }>,
): Promise<{ url: string; origin: ReturnType<typeof startOrigin>; daemon(name: string, args: string[]): Proc }> {
  const file = join(dir, "blob.bin");
  await makeFile(file, size);
  const origin = startOrigin(file);
  procs.push(origin);
  const url = await origin.url;
  const sched = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0", "--log-level", "info"], "scheduler ready");
  procs.push(sched);
  const saddr = String((await sched.ready)["listen"]);
  const daemon = (name: string, args: string[]): Proc => {
    const p = spawnDamselfly(["daemon", ...loopbackDaemonArgs(saddr, join(dir, name)), "--log-level", "info", ...args], "daemon ready");
    procs.push(p);
    return p;
  };
  return { url, origin, daemon };
}

export function startOrigin(file: string): { url: Promise<string>; sent(): Promise<number>; stop(): void } {
  const child = spawn(process.execPath, [join(ROOT, "dist", "bench", "origin-server.js"), file], { stdio: ["ignore", "pipe", "inherit"] });
  const rl = createInterface({ input: child.stdout! });
  let pendingSent: ((n: number) => void) | undefined;
  const url = new Promise<string>((resolve) => {
    rl.on("line", (line) => {
      if (line.startsWith("listening ")) resolve(line.slice("listening ".length));
      if (line.startsWith("sent ") && pendingSent) pendingSent(Number(line.slice(5)));
    });
  });
  return {
    url,
    sent: () =>
      new Promise<number>((resolve) => {
        pendingSent = resolve;
        child.kill("SIGUSR2");
      }),
    stop: () => child.kill("SIGTERM"),
  };
}

// Peak resident set size of a process so far (Linux VmHWM), in bytes.
export function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

export function run(cmd: string, args: string[]): Promise<{ code: number; ms: number; stderr: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr!.on("data", (d) => (stderr += d));
    c.on("exit", (code) => resolve({ code: code ?? -1, ms: performance.now() - t0, stderr }));
  });
}

export function mibps(bytes: number, ms: number): string {
  return (bytes / 1024 / 1024 / (ms / 1000)).toFixed(0) + " MiB/s";
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

// CPU seconds (user + system) a process has used so far.
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

// The node flag `damselfly scheduler` restarts itself with on this machine
// (src/cli/v8-pool.ts), if any: a bench that starts the scheduler with it
// measures the scheduler's own process, not the one that restarted it.
export function schedulerV8PoolArgs(): string[] {
  const n = schedulerPoolSize([], {}, usableCores());
  return n ? [`--v8-pool-size=${n}`] : [];
}

// The process doing a service's work: `pid` itself, or the scheduler that
// `damselfly scheduler` (pid) restarted with its V8 pool.
export function workerPid(pid: number): number {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    if (kids.length === 1 && readFileSync(`/proc/${kids[0]}/cmdline`, "utf8").includes("--v8-pool-size")) return Number(kids[0]);
  } catch {
    // Gone, or no such file: the pid is what we have.
  }
  return pid;
}
