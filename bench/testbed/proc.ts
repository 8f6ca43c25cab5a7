// Processes inside the testbed's network namespaces: long-lived services
// (origin server, tracker, seeders, daemons) whose output goes to a log file,
// and clients run to completion whose own CPU time is reported back. Every
// child is started in its own process group so that killing the group also
// takes what it started (a client under its bash wrapper); anything still
// alive when this process exits is SIGKILLed, and the testbed teardown kills
// whatever is left inside its namespaces.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Clock ticks per second of /proc/<pid>/stat and /proc/stat (USER_HZ; 100 on Linux).
const HZ = 100;

const live = new Set<ChildProcess>();
let hookInstalled = false;
function track(child: ChildProcess): void {
  if (!hookInstalled) {
    hookInstalled = true;
    process.on("exit", () => {
      for (const c of live) killGroup(c, "SIGKILL");
    });
  }
  live.add(child);
  child.once("close", () => live.delete(child));
  child.once("error", () => live.delete(child));
}

export function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    // gone already
  }
}

// Kills every child this module started (used on Ctrl-C and failures).
export function killAll(): void {
  for (const c of live) killGroup(c, "SIGKILL");
}

export function nsArgv(ns: string, argv: readonly string[]): string[] {
  return ["netns", "exec", ns, ...argv];
}

// --------------------------------------------------------------- services

export interface Service {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logFile: string;
  // Output lines so far (stdout and stderr interleaved; at most 20,000 kept).
  readonly lines: string[];
  // Resolves with the first past or future line matching pred; rejects after
  // timeoutMs or when the process exits first.
  waitForLine(pred: (line: string) => boolean, timeoutMs: number, what: string): Promise<string>;
  // SIGTERM to the group, SIGKILL after graceMs.
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
  running(): boolean;
}

const MAX_LINES = 20_000;

// Starts `argv` inside namespace ns (`ip netns exec` execs it, so the child's
// pid is the program's own pid); its output is appended to logFile.
export function startService(ns: string, name: string, argv: readonly string[], logFile: string): Service {
  const child = spawn("ip", nsArgv(ns, argv), { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  track(child);
  const log = createWriteStream(logFile, { flags: "a" });
  const lines: string[] = [];
  const watchers = new Set<() => void>();
  let running = true;
  let partial = "";
  const onData = (b: Buffer) => {
    log.write(b);
    partial += b.toString("utf8");
    const parts = partial.split("\n");
    partial = parts.pop()!;
    for (const l of parts) if (lines.length < MAX_LINES) lines.push(l);
    for (const w of [...watchers]) w();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", (e) => {
      running = false;
      lines.push(`[spawn error] ${e.message}`);
      for (const w of [...watchers]) w();
      resolve(null);
    });
    child.once("close", (code) => {
      running = false;
      if (partial) lines.push(partial);
      log.end();
      for (const w of [...watchers]) w();
      resolve(code);
    });
  });
  return {
    name,
    pid: child.pid ?? -1,
    child,
    logFile,
    lines,
    exited,
    running: () => running,
    waitForLine(pred, timeoutMs, what) {
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`${name}: no ${what} within ${timeoutMs} ms (log: ${logFile})\n${lines.slice(-15).join("\n")}`));
        }, timeoutMs);
        const check = () => {
          const hit = lines.find(pred);
          if (hit !== undefined || !running) {
            clearTimeout(timer);
            watchers.delete(check);
            if (hit !== undefined) resolve(hit);
            else reject(new Error(`${name} exited before ${what} (log: ${logFile})\n${lines.slice(-15).join("\n")}`));
          }
        };
        watchers.add(check);
        check();
      });
    },
    async stop(graceMs = 5_000) {
      if (!running) return;
      killGroup(child, "SIGTERM");
      const timer = setTimeout(() => killGroup(child, "SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

// A JSON log line's fields, or undefined when the line is not JSON.
export function jsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const j = JSON.parse(line) as unknown;
    return j && typeof j === "object" ? (j as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- clients

export interface ClientResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  // performance.now() when the client's process closed.
  endMs: number;
  // CPU seconds (user + system) of the command and everything it waited for,
  // from its bash wrapper's cutime/cstime; undefined if it was killed.
  cpuS: number | undefined;
  // The user-mode part of cpuS: system time also holds the kernel's network
  // work (softirq) that happened to run while the process was on a CPU.
  userS: number | undefined;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

// The wrapper runs the command, then prints its own /proc stat line, whose
// cutime and cstime hold the CPU of the children it waited for.
const WRAP = `"$@"; rc=$?; read -r s < /proc/$$/stat; printf '\\n@@tbcpu %s\\n' "$s" >&2; exit $rc`;
const KEEP = 64 * 1024;

// Runs argv inside ns to completion; SIGKILLs its process group at
// deadlineMs (a performance.now() instant).
export function runClient(ns: string, argv: readonly string[], deadlineMs: number): Promise<ClientResult> {
  return new Promise<ClientResult>((resolve) => {
    const child = spawn("ip", nsArgv(ns, ["bash", "-c", WRAP, "tb-client", ...argv]), {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    track(child);
    let out = "";
    let err = "";
    child.stdout!.setEncoding("utf8");
    child.stderr!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => (out = (out + s).slice(-KEEP)));
    child.stderr!.on("data", (s: string) => (err = (err + s).slice(-KEEP)));
    let timedOut = false;
    const timer = setTimeout(
      () => {
        timedOut = true;
        killGroup(child, "SIGKILL");
      },
      Math.max(0, deadlineMs - performance.now()),
    );
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      const endMs = performance.now();
      let cpuS: number | undefined;
      let userS: number | undefined;
      const m = /\n@@tbcpu (.*)\n?$/.exec(err);
      if (m) {
        const f = m[1]!.split(") ")[1]!.split(" ");
        cpuS = (Number(f[13]) + Number(f[14])) / HZ;
        userS = Number(f[13]) / HZ;
        err = err.slice(0, m.index);
      }
      resolve({ code, signal, endMs, cpuS, userS, stdout: out, stderr: err, timedOut });
    };
    child.once("error", (e) => {
      err += `[spawn error] ${e.message}`;
      finish(null, null);
    });
    child.once("close", (code, signal) => finish(code, signal));
  });
}

// ------------------------------------------------------------------- CPU

// CPU seconds (all threads) a live process has used so far, split into user
// and system time; undefined once it is gone. The kernel charges softirq work
// (here mostly the testbed's own tbf shaping and veth forwarding) to whatever
// process it interrupts, so system time grows with how long a process is on a
// CPU, not only with what it asks of the kernel.
export function processCpu(pid: number): { userS: number; systemS: number } | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return { userS: Number(f[11]) / HZ, systemS: Number(f[12]) / HZ };
  } catch {
    return undefined;
  }
}

interface StatSample {
  // user nice system idle iowait irq softirq steal, in ticks
  f: number[];
  busy: number;
  total: number;
}

function readStat(): StatSample {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  while (f.length < 8) f.push(0);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  // Busy: what this machine's kernels and processes ran. Steal (the
  // hypervisor ran something else) is reported apart, not as busy.
  const busy = user + nice + system + irq + softirq;
  return { f, busy, total: busy + idle + iowait + steal };
}

export interface CpuShare {
  // Busy share of the whole machine (all cores) over the run, 0..1.
  mean: number;
  // Highest one-second busy share seen.
  max1s: number;
  // Shares of the run's CPU time by kind (user incl. nice, system, irq+softirq, steal, idle incl. iowait).
  breakdown: { user: number; system: number; softirq: number; steal: number; idle: number };
  // Share of the one-second samples at least 95 % busy.
  saturatedShare: number;
  // One-second busy shares, in order.
  perSecond: number[];
  seconds: number;
}

// Samples /proc/stat once a second until stop(); at most maxSeconds samples
// are kept.
export function cpuSampler(maxSeconds = 3_600): { stop(): CpuShare } {
  const first = readStat();
  let prev = first;
  const perSecond: number[] = [];
  const timer = setInterval(() => {
    const s = readStat();
    const dt = s.total - prev.total;
    if (dt > 0) perSecond.push(Math.round(((s.busy - prev.busy) / dt) * 1000) / 1000);
    prev = s;
    if (perSecond.length >= maxSeconds) clearInterval(timer);
  }, 1_000);
  timer.unref();
  const t0 = performance.now();
  return {
    stop() {
      clearInterval(timer);
      const s = readStat();
      const dt = s.total - first.total;
      const d = s.f.map((v, i) => v - first.f[i]!);
      const sh = (x: number) => (dt > 0 ? x / dt : 0);
      return {
        mean: sh(s.busy - first.busy),
        max1s: Math.max(0, ...perSecond),
        saturatedShare: perSecond.length ? perSecond.filter((x) => x >= 0.95).length / perSecond.length : 0,
        breakdown: { user: sh(d[0]! + d[1]!), system: sh(d[2]!), softirq: sh(d[5]! + d[6]!), steal: sh(d[7]!), idle: sh(d[3]! + d[4]!) },
        perSecond,
        seconds: (performance.now() - t0) / 1000,
      };
    },
  };
}

// ------------------------------------------------------- cgroup accounting

// The CPU of this process and everything it starts (short-lived clients
// included), from a cgroup-v1 cpuacct group it moves itself into, so that
// the testbed's share of the machine can be told apart from whatever else
// runs on it. undefined where cpuacct is not available.
const CPUACCT = "/sys/fs/cgroup/cpuacct";
const CG_PREFIX = "dftb-";

export interface CpuAccount {
  readonly path: string;
  // CPU seconds used so far by this process and its descendants.
  usageS(): number;
  // Moves this process back to the root group and removes the group.
  release(): void;
}

export function removeStaleCgroups(): void {
  try {
    for (const d of readdirSync(CPUACCT)) {
      if (!d.startsWith(CG_PREFIX)) continue;
      try {
        rmdirSync(`${CPUACCT}/${d}`);
      } catch {
        // still in use (another run) or not empty
      }
    }
  } catch {
    // no cpuacct
  }
}

export function cpuAccount(): CpuAccount | undefined {
  const path = `${CPUACCT}/${CG_PREFIX}${process.pid}`;
  try {
    if (!existsSync(CPUACCT)) return undefined;
    mkdirSync(path);
    writeFileSync(`${path}/cgroup.procs`, String(process.pid));
  } catch {
    try {
      rmdirSync(path);
    } catch {
      // not created
    }
    return undefined;
  }
  let released = false;
  return {
    path,
    usageS: () => Number(readFileSync(`${path}/cpuacct.usage`, "utf8").trim()) / 1e9,
    release() {
      if (released) return;
      released = true;
      try {
        writeFileSync(`${CPUACCT}/cgroup.procs`, String(process.pid));
      } catch {
        // ignore
      }
      // Killed children leave the group a moment later: retry briefly.
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(path);
          return;
        } catch {
          const t = Date.now() + 20;
          while (Date.now() < t) {
            // short synchronous wait: release() also runs from exit hooks
          }
        }
      }
    },
  };
}
