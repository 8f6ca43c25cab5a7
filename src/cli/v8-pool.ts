// The scheduler answers every peer from one thread, and V8's garbage
// collector works in pauses on that thread with helpers from a thread pool
// that Node sizes at four whatever the machine. On a machine with fewer than
// five cores the helpers outnumber the cores: in a pause the main thread
// waits for helpers that another thread (often one of its own helpers)
// pushed off a core, and the scheduler's latency tail is those pauses
// (docs/decisions/scheduler-v8-pool.md). Node sizes the pool only at start
// (--v8-pool-size), so `damselfly scheduler` starts itself once more with a
// pool that leaves the main thread a core.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { Socket } from "node:net";
import { availableParallelism } from "node:os";

// Set in the restarted scheduler, so it does not restart again.
export const RESPAWNED_ENV = "DAMSELFLY_RESPAWNED";
// Pool size override: N >= 1 uses N; 0 keeps Node's default (no restart).
export const POOL_SIZE_ENV = "DAMSELFLY_V8_POOL_SIZE";
const NODE_DEFAULT_POOL = 4;

// The pool size the scheduler should run with, or undefined to run as it is:
// it was restarted already, the pool size was set by hand (node's own flag
// or NODE_OPTIONS), or the machine has cores enough for Node's default.
export function schedulerPoolSize(execArgv: readonly string[], env: NodeJS.ProcessEnv, cores: number): number | undefined {
  if (env[RESPAWNED_ENV] === "1") return undefined;
  if (execArgv.some((a) => a.startsWith("--v8-pool-size")) || (env["NODE_OPTIONS"] ?? "").includes("--v8-pool-size")) return undefined;
  const forced = env[POOL_SIZE_ENV];
  if (forced !== undefined && forced !== "") {
    const n = Number(forced);
    if (!Number.isInteger(n) || n < 0 || n > 64) throw new Error(`${POOL_SIZE_ENV}=${JSON.stringify(forced)}: expected an integer 0..64`);
    return n === 0 ? undefined : n;
  }
  return cores - 1 >= NODE_DEFAULT_POOL ? undefined : Math.max(1, cores - 1);
}

// CPUs this process may use: its affinity, and a cgroup v2 quota if lower
// (a container limited to 2 CPUs on a 32-core node has 2).
export function usableCores(): number {
  let cores = availableParallelism();
  try {
    const [quota, period] = readFileSync("/sys/fs/cgroup/cpu.max", "utf8").trim().split(/\s+/);
    if (quota !== undefined && quota !== "max" && Number(period) > 0) cores = Math.min(cores, Math.max(1, Math.ceil(Number(quota) / Number(period))));
  } catch {
    // No cgroup v2 file: the affinity is all there is.
  }
  return cores;
}

// Runs `script args` again under `node --v8-pool-size=N` and stands in for
// it: signals go on to it, its exit status becomes ours. The child has its
// own process group, so a terminal's Ctrl-C reaches it once (through us),
// not twice (a second SIGINT makes the scheduler exit without draining).
export function respawnWithPool(size: number, script: string, args: readonly string[]): Promise<never> {
  // fd 3 is a pipe the child only watches: it reads end-of-file the moment
  // this process is gone, however it went (see followParent).
  const child = spawn(process.execPath, [...process.execArgv, `--v8-pool-size=${size}`, script, ...args], {
    stdio: ["inherit", "inherit", "inherit", "pipe"],
    detached: true,
    env: { ...process.env, [RESPAWNED_ENV]: "1" },
  });
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const forward = (s: NodeJS.Signals) => child.kill(s);
  for (const s of signals) process.on(s, forward);
  return new Promise<never>((_, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      for (const s of signals) process.off(s, forward);
      if (signal) process.kill(process.pid, signal);
      process.exit(code ?? 1);
    });
  });
}

// In the restarted scheduler: once the process that started it is gone
// (killed with SIGKILL, say), shut down as on SIGTERM rather than run on
// unseen, holding its port.
export function followParent(): void {
  let pipe: Socket;
  try {
    pipe = new Socket({ fd: 3, readable: true, writable: false });
  } catch {
    return; // started by hand with the variable set: no pipe to watch
  }
  pipe.on("error", () => undefined);
  pipe.once("close", () => process.kill(process.pid, "SIGTERM"));
  pipe.resume();
  pipe.unref();
}
