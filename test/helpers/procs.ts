// Real damselfly processes for integration tests: spawn, read their pino log
// lines, wait for "ready" lines, stop them, and always clean up.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

// The repository root (holds package.json named "damselfly"), found from this
// file whether it runs from dist/test/helpers or test/helpers.
export const REPO_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "damselfly") return dir;
      } catch {
        // keep looking
      }
    }
    dir = dirname(dir);
  }
  throw new Error("cannot find the damselfly repository root from " + fileURLToPath(import.meta.url));
})();

export const BIN_DAMSELFLY = join(REPO_ROOT, "bin", "damselfly");

export interface LogLine {
  level: number;
  msg: string;
  time?: string;
  [field: string]: unknown;
}

// What node:test's TestContext and SuiteContext offer for cleanup.
export interface Cleanup {
  after(fn: () => unknown): void;
}

export interface SpawnOptions {
  // Added to (and overriding) the inherited environment. DAMSELFLY_* variables
  // of the test runner's own environment are not inherited.
  env?: Record<string, string | undefined>;
  // Registers a kill at the end of this test/suite (t.after).
  t?: Cleanup;
  // A label used in error messages (default: the first argument).
  name?: string;
  // Echo the child's stderr to this process's stderr (debugging).
  echo?: boolean;
  // Node flags before the script (e.g. the scheduler's V8 pool size).
  nodeArgs?: readonly string[];
  // Keep the DAMSELFLY_* variables of this process's environment (the
  // benchmarks run as their caller configured them).
  inheritEnv?: boolean;
  // Working directory (default: the repository root).
  cwd?: string;
}

export interface DamselflyProc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  // Everything written so far.
  stdout(): string;
  stderr(): string;
  // Parsed JSON log lines from stderr so far.
  readonly logs: readonly LogLine[];
  // Resolves with the first (past or future) log line whose msg equals msg
  // and that matches the optional predicate.
  waitForLog(msg: string, timeoutMs?: number, predicate?: (l: LogLine) => boolean): Promise<LogLine>;
  // Resolves when stdout contains the text.
  waitForStdout(text: string | RegExp, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  // Sends a signal and waits for exit; SIGKILL after graceMs.
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  // Exit code (null when killed by a signal); never rejects.
  readonly exited: Promise<number | null>;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  readonly running: boolean;
}

// Children still running, killed if this process exits without cleanup.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

// Kills the child (SIGKILL) if this process exits while it still runs.
export function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const c of live) {
        try {
          c.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    });
  }
  live.add(child);
  child.once("close", () => live.delete(child));
  child.once("error", () => live.delete(child));
}

// The environment for a child: `base` without node:test's marker (a child
// that runs node --test would report into ours), then `extra` on top
// (undefined removes a variable).
export function commandEnv(extra: Record<string, string | undefined> = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  delete env.NODE_TEST_CONTEXT;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("DAMSELFLY_")) base[k] = v;
  // Keep the children's output plain and deterministic.
  base.NO_COLOR = "1";
  return commandEnv(extra, base);
}

export function tail(s: string, n = 4000): string {
  return s.length > n ? "..." + s.slice(-n) : s;
}

export function spawnDamselfly(args: readonly string[], opts: SpawnOptions = {}): DamselflyProc {
  const name = opts.name ?? args[0] ?? "damselfly";
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), BIN_DAMSELFLY, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: opts.inheritEnv ? commandEnv(opts.env) : childEnv(opts.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  trackChild(child);
  let out = "";
  let err = "";
  let partial = "";
  const logs: LogLine[] = [];
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const w of [...watchers]) w();
  };

  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => {
    out += s;
    notify();
  });
  child.stderr!.on("data", (s: string) => {
    err += s;
    if (opts.echo) process.stderr.write(s);
    partial += s;
    const lines = partial.split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      const t = line.trim();
      if (!t.startsWith("{")) continue;
      try {
        const parsed = JSON.parse(t) as LogLine;
        if (parsed && typeof parsed === "object" && typeof parsed.msg === "string") logs.push(parsed);
      } catch {
        // not a log line
      }
    }
    notify();
  });

  let exitCode: number | null = null;
  let signalCode: NodeJS.Signals | null = null;
  let running = true;
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", (e) => {
      err += `\n[spawn error] ${e.message}\n`;
      running = false;
      notify();
      resolve(null);
    });
    // "close" (not "exit"): all output has been read by then.
    child.once("close", (code, signal) => {
      exitCode = code;
      signalCode = signal;
      running = false;
      notify();
      resolve(code);
    });
  });

  const describe = () => `${name} (pid ${child.pid}${running ? "" : `, exited ${exitCode ?? signalCode}`})`;

  const waitFor = <T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const first = check();
      if (first !== undefined) return resolve(first);
      const timer = setTimeout(() => {
        watchers.delete(watch);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what} from ${describe()}\n--- stderr ---\n${tail(err)}\n--- stdout ---\n${tail(out)}`));
      }, timeoutMs);
      const watch = () => {
        const v = check();
        if (v !== undefined) {
          clearTimeout(timer);
          watchers.delete(watch);
          resolve(v);
        } else if (!running) {
          clearTimeout(timer);
          watchers.delete(watch);
          reject(new Error(`${describe()} exited while waiting for ${what}\n--- stderr ---\n${tail(err)}\n--- stdout ---\n${tail(out)}`));
        }
      };
      watchers.add(watch);
    });

  const proc: DamselflyProc = {
    name,
    child,
    pid: child.pid ?? -1,
    stdout: () => out,
    stderr: () => err,
    logs,
    waitForLog(msg, timeoutMs = 15_000, predicate) {
      return waitFor(() => logs.find((l) => l.msg === msg && (!predicate || predicate(l))), `log line "${msg}"`, timeoutMs);
    },
    waitForStdout(text, timeoutMs = 15_000) {
      return waitFor(() => ((typeof text === "string" ? out.includes(text) : text.test(out)) ? true : undefined), `stdout ${String(text)}`, timeoutMs).then(
        () => undefined,
      );
    },
    kill(signal = "SIGTERM") {
      if (running) child.kill(signal);
    },
    async stop(signal = "SIGTERM", graceMs = 5_000) {
      if (!running) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    exited,
    get exitCode() {
      return exitCode;
    },
    get signalCode() {
      return signalCode;
    },
    get running() {
      return running;
    },
  };
  opts.t?.after(() => proc.stop("SIGKILL", 0).then(() => undefined));
  return proc;
}

export function waitForLog(proc: DamselflyProc, msg: string, timeoutMs = 15_000, predicate?: (l: LogLine) => boolean): Promise<LogLine> {
  return proc.waitForLog(msg, timeoutMs, predicate);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  elapsedMs: number;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  // Kill the process (SIGKILL) and reject after this long (default 60s).
  timeoutMs?: number;
  // Data written to the child's stdin (default: none, stdin closed).
  input?: string | Buffer;
  // Run as this user/group (the test runner must be root).
  uid?: number;
  gid?: number;
  // A command that runs node in its place (e.g. setpriv with its options).
  prefix?: readonly string[];
}

export interface ProcessOptions {
  env: NodeJS.ProcessEnv;
  // SIGKILL and reject after this long (default 60s).
  timeoutMs?: number;
  input?: string | Buffer;
  cwd?: string;
  uid?: number;
  gid?: number;
}

// Runs a command to completion; resolves whatever its exit code (rejects only
// when it cannot start or outlives timeoutMs).
export function runProcess(cmd: string, args: readonly string[], opts: ProcessOptions): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const started = Date.now();
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    trackChild(child);
    const out: Buffer[] = [];
    let err = "";
    child.stdout!.on("data", (b: Buffer) => out.push(b));
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => (err += s));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      if (timedOut) {
        reject(
          new Error(
            `${cmd} ${args.join(" ")} did not finish within ${timeoutMs}ms\n--- stderr ---\n${tail(err)}\n--- stdout ---\n${tail(stdout.toString("utf8"))}`,
          ),
        );
        return;
      }
      resolve({ code, signal, stdout, stderr: err, elapsedMs: Date.now() - started });
    });
  });
}

// Runs a damselfly command to completion.
export function runDamselfly(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...argv] = [...(opts.prefix ?? []), process.execPath, BIN_DAMSELFLY, ...args];
  return runProcess(cmd!, argv, { ...opts, env: childEnv(opts.env), cwd: REPO_ROOT });
}

// Runs `node bin/damselfly get <args>` to completion.
export function runGet(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runDamselfly(["get", ...args], opts);
}

// A loopback port where nothing listens (bound, then released).
export async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

// A daemon on loopback with every port ephemeral: the arguments all tests and
// benchmarks start one with.
export function loopbackDaemonArgs(scheduler: string, dataDir: string): string[] {
  return ["--scheduler", scheduler, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"];
}
