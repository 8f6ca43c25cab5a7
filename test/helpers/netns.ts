// Test hosts in network namespaces: `createTestHost("dfreg1", { hostIp:
// "10.213.1.1", nsIp: "10.213.1.2" })` makes a namespace whose eth0 (nsIp/24)
// is one end of a veth pair; the other end ("dfh-<name>", hostIp/24) stays in
// the root namespace. A server run inside (`ip netns exec <name> ...`, see
// host.cmd) is then reachable from the test at nsIp, which is not loopback:
// Go clients such as skopeo ignore HTTP_PROXY for loopback addresses, so the
// proxy-mode tests put their registry there. Only 10.213.0.0/16 is accepted,
// and nothing routes beyond the /24 the test creates.
//
// Also here: runCommand, the run-to-completion helper the registry, image and
// containerd helpers share, and trackChild (kill on exit).
import type { ChildProcess } from "node:child_process";
import { commandEnv, runProcess, tail, trackChild, type Cleanup } from "./procs.js";

// ---------------------------------------------------------------- processes

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

export interface CommandOptions {
  // Replaces the inherited environment's variables (undefined deletes one).
  env?: Record<string, string | undefined>;
  // SIGKILL and reject after this long (default 60s).
  timeoutMs?: number;
  input?: string | Buffer;
  cwd?: string;
}

export { commandEnv, trackChild };

// Watches a long-running child: whether it still runs and how it ended.
export interface ExitWatch {
  readonly exited: Promise<void>;
  running: boolean;
  info: string;
  // SIGTERM, SIGKILL after graceMs; resolves once the child is gone.
  terminate(graceMs: number): Promise<void>;
}

export function watchExit(child: ChildProcess): ExitWatch {
  const w = { running: true, info: "" } as ExitWatch & { exited: Promise<void> };
  w.terminate = async (graceMs) => {
    if (!w.running) return w.exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    try {
      await w.exited;
    } finally {
      clearTimeout(timer);
    }
  };
  w.exited = new Promise<void>((resolve) => {
    child.once("error", (e) => {
      w.running = false;
      w.info = `spawn error: ${e.message}`;
      resolve();
    });
    child.once("close", (code, signal) => {
      w.running = false;
      w.info = `exited ${code ?? signal}`;
      resolve();
    });
  });
  return w;
}

// Runs a command to completion (procs.ts's runProcess, stdout as text);
// resolves whatever its exit code (rejects only when it cannot start or
// outlives timeoutMs).
export async function runCommand(cmd: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const r = await runProcess(cmd, args, { ...opts, env: commandEnv(opts.env) });
  return { ...r, stdout: r.stdout.toString("utf8") };
}

// Like runCommand, but rejects unless the exit code is 0.
export async function mustRun(cmd: string, args: readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code ?? r.signal}\n--- stderr ---\n${tail(r.stderr)}\n--- stdout ---\n${tail(r.stdout)}`);
  }
  return r;
}

// ------------------------------------------------------------------- netns

export interface TestHostOptions {
  // The root namespace's end of the veth pair, e.g. "10.213.1.1" (/24).
  hostIp: string;
  // The namespace's eth0, e.g. "10.213.1.2" (/24, same /24 as hostIp).
  nsIp: string;
  // Destroy at the end of this test/suite.
  t?: Cleanup;
}

export interface TestHost {
  // The network namespace's name (as given).
  readonly name: string;
  readonly hostIp: string;
  readonly nsIp: string;
  // The veth end in the root namespace ("dfh-<name>"); the other is eth0 inside.
  readonly hostIf: string;
  // ["ip", "netns", "exec", name, ...argv]: how to run something inside.
  cmd(argv: readonly string[]): string[];
  // Runs a command inside the namespace to completion.
  run(cmd: string, args: readonly string[], opts?: CommandOptions): Promise<CommandResult>;
  // Kills anything left inside, removes the veth pair and the namespace.
  // Idempotent.
  destroy(): Promise<void>;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,10}$/;
const HOST_IF_PREFIX = "dfh-";

export function hostIfName(name: string): string {
  return HOST_IF_PREFIX + name;
}

function parseTestIp(ip: string, what: string): number[] {
  const m = /^10\.213\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  const o = m ? [10, 213, Number(m[1]), Number(m[2])] : [];
  if (!m || o[2]! > 255 || o[3]! < 1 || o[3]! > 254) {
    throw new Error(`${what} ${JSON.stringify(ip)}: test hosts use addresses 10.213.X.Y (Y in 1..254) only`);
  }
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function linkExists(ifName: string): Promise<boolean> {
  const r = await runCommand("ip", ["-o", "link", "show", "dev", ifName], { timeoutMs: 10_000 });
  return r.code === 0;
}

// The names of the network namespaces there are.
export async function netnsNames(): Promise<string[]> {
  const r = await runCommand("ip", ["netns", "list"], { timeoutMs: 10_000 });
  return r.stdout.split("\n").map((l) => l.split(/\s+/)[0] ?? "");
}

async function netnsExists(name: string): Promise<boolean> {
  return (await netnsNames()).includes(name);
}

// SIGKILLs every process that runs in the namespace.
export async function killNetnsProcesses(name: string): Promise<void> {
  const pids = await runCommand("ip", ["netns", "pids", name], { timeoutMs: 10_000 });
  for (const p of pids.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s))) {
    try {
      process.kill(Number(p), "SIGKILL");
    } catch {
      // gone already
    }
  }
}

// Removes what an earlier (maybe crashed) run left under this name: processes
// inside the namespace, the veth pair, the namespace. Waits (bounded) until
// the host-side interface is gone, since the kernel tears namespaces down
// asynchronously.
export async function cleanupTestHost(name: string): Promise<void> {
  if (!NAME_RE.test(name)) throw new Error(`bad test host name ${JSON.stringify(name)}`);
  const hostIf = hostIfName(name);
  if (await netnsExists(name)) await killNetnsProcesses(name);
  if (await linkExists(hostIf)) await runCommand("ip", ["link", "del", "dev", hostIf], { timeoutMs: 10_000 });
  if (await netnsExists(name)) await runCommand("ip", ["netns", "del", name], { timeoutMs: 10_000 });
  for (let i = 0; i < 100 && (await linkExists(hostIf)); i++) await sleep(50);
  if (await linkExists(hostIf)) throw new Error(`interface ${hostIf} is still there after deleting netns ${name}`);
}

export async function createTestHost(name: string, o: TestHostOptions): Promise<TestHost> {
  if (!NAME_RE.test(name)) {
    throw new Error(`test host name ${JSON.stringify(name)}: 1-11 of [a-z0-9-] (the host interface "${HOST_IF_PREFIX}<name>" must fit IFNAMSIZ)`);
  }
  const h = parseTestIp(o.hostIp, "hostIp");
  const n = parseTestIp(o.nsIp, "nsIp");
  if (h[2] !== n[2] || h[3] === n[3]) throw new Error(`hostIp ${o.hostIp} and nsIp ${o.nsIp} must be two addresses of one /24`);
  const hostIf = hostIfName(name);
  const subnet = `10.213.${h[2]}.`;

  await cleanupTestHost(name);
  // Another interface (not ours by name) holding an address in this /24
  // would make routing ambiguous: refuse rather than guess.
  const addrs = await runCommand("ip", ["-o", "-4", "addr", "show"], { timeoutMs: 10_000 });
  for (const line of addrs.stdout.split("\n")) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)\//.exec(line);
    if (m && m[2]!.startsWith(subnet)) {
      throw new Error(`${m[1]} already has ${m[2]} (in ${subnet}0/24); pick another /24 or remove it (a leftover test host of another name?)`);
    }
  }

  const host: TestHost = {
    name,
    hostIp: o.hostIp,
    nsIp: o.nsIp,
    hostIf,
    cmd: (argv) => ["ip", "netns", "exec", name, ...argv],
    run: (cmd, args, opts) => runCommand("ip", ["netns", "exec", name, cmd, ...args], opts),
    destroy: () => cleanupTestHost(name),
  };
  try {
    await mustRun("ip", ["netns", "add", name], { timeoutMs: 10_000 });
    // The peer is created inside the namespace directly, so "eth0" cannot
    // clash with the root namespace's own eth0.
    await mustRun("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name], { timeoutMs: 10_000 });
    await mustRun("ip", ["addr", "add", `${o.hostIp}/24`, "dev", hostIf], { timeoutMs: 10_000 });
    await mustRun("ip", ["link", "set", hostIf, "up"], { timeoutMs: 10_000 });
    await mustRun("ip", ["netns", "exec", name, "ip", "link", "set", "lo", "up"], { timeoutMs: 10_000 });
    await mustRun("ip", ["netns", "exec", name, "ip", "addr", "add", `${o.nsIp}/24`, "dev", "eth0"], { timeoutMs: 10_000 });
    await mustRun("ip", ["netns", "exec", name, "ip", "link", "set", "eth0", "up"], { timeoutMs: 10_000 });
    // Bounded wait for the link to come up (and DAD-free IPv4 needs none, but
    // the veth carrier takes a moment).
    for (let i = 0; i < 100; i++) {
      const r = await runCommand("ip", ["-o", "link", "show", "dev", hostIf], { timeoutMs: 10_000 });
      if (/[<,]LOWER_UP[,>]/.test(r.stdout)) break;
      await sleep(20);
    }
  } catch (e) {
    await cleanupTestHost(name).catch(() => undefined);
    throw e;
  }
  o.t?.after(() => host.destroy());
  return host;
}
