// A local swarm of real processes: one scheduler plus seed/normal daemons,
// every listener on 127.0.0.1 with an OS-assigned port.
import { mkdtempSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makePki, type Pki } from "./pki.js";
import { spawnDamselfly, type Cleanup, type DamselflyProc, type LogLine, type RunOptions, type RunResult, runGet, loopbackDaemonArgs } from "./procs.js";

export interface SchedulerHandle {
  proc: DamselflyProc;
  // "127.0.0.1:PORT"
  address: string;
}

export interface DaemonHandle {
  name: string;
  seed: boolean;
  proc: DamselflyProc;
  dataDir: string;
  // "HOST:PORT" as logged in "daemon ready".
  api: string;
  upload: string;
  proxy: string;
  // http://HOST:PORT; with TLS unix:PATH (a seed: https://HOST:PORT, and
  // get() adds a client certificate).
  apiUrl: string;
  proxyUrl: string;
  ready: LogLine;
  // Runs `damselfly get <args> --daemon <this daemon>`.
  get(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

export interface ClusterOptions {
  // Normal peer daemons (default 3).
  peers?: number;
  // Start a seed peer (default true).
  seed?: boolean;
  // Where daemon data dirs go (default: a new temp dir, removed by stop()).
  dataRoot?: string;
  // Extra arguments for the scheduler and every daemon.
  schedulerArgs?: readonly string[];
  daemonArgs?: readonly string[];
  env?: Record<string, string | undefined>;
  logLevel?: string;
  // Stop the cluster at the end of this test/suite.
  t?: Cleanup;
  readyTimeoutMs?: number;
  echo?: boolean;
  // Schedulers side by side (default 1); every daemon is given all of them.
  schedulers?: number;
  // Mutual TLS: a CA in the data root, a certificate per component (role
  // scheduler, seed-peer or peer, named after the host); each daemon's local
  // API on a Unix socket in its data dir.
  tls?: boolean;
}

export interface AddDaemonOptions {
  seed?: boolean;
  name?: string;
  args?: readonly string[];
  env?: Record<string, string | undefined>;
  // Reuse a data dir (e.g. to restart a daemon on its old data).
  dataDir?: string;
}

export interface Cluster {
  // The first of `schedulers`.
  scheduler: SchedulerHandle;
  schedulers: SchedulerHandle[];
  // Starts scheduler `i` again on its old address (after it was stopped):
  // a restarted scheduler, knowing nothing.
  restartScheduler(i: number): Promise<SchedulerHandle>;
  seed: DaemonHandle | undefined;
  peers: DaemonHandle[];
  // Seed (if any) followed by the peers, plus any added later.
  daemons: DaemonHandle[];
  dataRoot: string;
  // With tls.
  pki: Pki | undefined;
  addDaemon(opts?: AddDaemonOptions): Promise<DaemonHandle>;
  // Stops one daemon (SIGTERM, then SIGKILL after graceMs); returns its exit code.
  stopDaemon(d: DaemonHandle, signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  stop(): Promise<void>;
}

// The tests' registries and origins listen on 127.0.0.1, which a daemon's
// proxy reaches only when told (proxy.allowLocal); the proxy-policy tests
// start their own daemons.
export const PROXY_TO_LOOPBACK = { DAMSELFLY_DAEMON_PROXY_ALLOW_LOCAL: "127.0.0.1:1024-65535" };

function loopback(hostPort: string): string {
  return hostPort.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const peers = opts.peers ?? 3;
  const withSeed = opts.seed ?? true;
  const readyTimeout = opts.readyTimeoutMs ?? 20_000;
  const logLevel = opts.logLevel ?? "info";
  const ownRoot = opts.dataRoot === undefined;
  const dataRoot = opts.dataRoot ?? mkdtempSync(join(tmpdir(), "damselfly-cluster-"));
  const procs: DamselflyProc[] = [];
  const daemons: DaemonHandle[] = [];
  let counter = 0;
  let stopped = false;

  const stopAll = async () => {
    if (stopped) return;
    stopped = true;
    // Daemons first, then the scheduler.
    const isScheduler = (p: DamselflyProc) => p.name.startsWith("scheduler");
    await Promise.all(procs.filter((p) => !isScheduler(p)).map((p) => p.stop("SIGTERM", 5_000)));
    await Promise.all(procs.filter(isScheduler).map((p) => p.stop("SIGTERM", 5_000)));
    if (ownRoot) rmSync(dataRoot, { recursive: true, force: true });
  };
  opts.t?.after(stopAll);

  try {
    const pki = opts.tls ? await makePki(join(dataRoot, "pki")) : undefined;
    const schedulerTls = pki ? await pki.args("scheduler", "scheduler") : [];
    const startScheduler = async (listen: string, i: number): Promise<SchedulerHandle> => {
      const sproc = spawnDamselfly(["scheduler", "--listen", listen, "--log-level", logLevel, ...schedulerTls, ...(opts.schedulerArgs ?? [])], {
        name: i === 0 ? "scheduler" : `scheduler-${i}`,
        ...(opts.env ? { env: opts.env } : {}),
        ...(opts.echo ? { echo: true } : {}),
      });
      procs.push(sproc);
      const sready = await sproc.waitForLog("scheduler ready", readyTimeout);
      return { proc: sproc, address: loopback(String(sready.listen)) };
    };
    const schedulers: SchedulerHandle[] = [];
    for (let i = 0; i < (opts.schedulers ?? 1); i++) schedulers.push(await startScheduler("127.0.0.1:0", i));
    const scheduler = schedulers[0]!;
    const schedulerList = schedulers.map((x) => x.address).join(",");
    const restartScheduler = async (i: number): Promise<SchedulerHandle> => {
      const old = schedulers[i]!;
      await old.proc.stop("SIGKILL", 0);
      schedulers[i] = await startScheduler(old.address, i);
      return schedulers[i]!;
    };

    const addDaemon = async (a: AddDaemonOptions = {}): Promise<DaemonHandle> => {
      const seed = a.seed ?? false;
      const name = a.name ?? (seed ? `seed-${counter++}` : `peer-${counter++}`);
      const dataDir = a.dataDir ?? join(dataRoot, name);
      await mkdir(dataDir, { recursive: true });
      const socket = join(dataDir, "daemon.sock");
      // A seed's API stays on TCP (mutual TLS): the scheduler triggers it there.
      const tlsArgs = pki ? [...(await pki.args(seed ? "seed-peer" : "peer", name)), ...(seed ? [] : ["--listen", `unix:${socket}`])] : [];
      const args = [
        "daemon",
        ...(seed ? ["--seed"] : []),
        ...loopbackDaemonArgs(schedulerList, dataDir),
        ...tlsArgs,
        "--hostname",
        name,
        "--log-level",
        logLevel,
        ...(opts.daemonArgs ?? []),
        ...(a.args ?? []),
      ];
      const env = { ...PROXY_TO_LOOPBACK, ...opts.env, ...a.env };
      const proc = spawnDamselfly(args, { name, env, ...(opts.echo ? { echo: true } : {}) });
      procs.push(proc);
      const ready = await proc.waitForLog("daemon ready", readyTimeout);
      const api = pki && !seed ? `unix:${socket}` : loopback(String(ready.api));
      const apiUrl = pki ? (seed ? `https://${api}` : api) : `http://${api}`;
      // `get` to a TCP API under TLS shows a client certificate.
      const clientTls = pki && seed ? await pki.args("client", "test-client") : [];
      const handle: DaemonHandle = {
        name,
        seed,
        proc,
        dataDir,
        api,
        upload: loopback(String(ready.upload)),
        proxy: loopback(String(ready.proxy)),
        apiUrl,
        proxyUrl: `http://${loopback(String(ready.proxy))}`,
        ready,
        get: (getArgs, runOpts) => runGet([...getArgs, "--daemon", apiUrl, ...clientTls], runOpts),
      };
      daemons.push(handle);
      return handle;
    };

    const seedHandle = withSeed ? await addDaemon({ seed: true, name: "seed" }) : undefined;
    const peerHandles = await Promise.all(Array.from({ length: peers }, (_, i) => addDaemon({ name: `peer-${i}` })));
    counter = peers;

    return {
      scheduler,
      schedulers,
      restartScheduler,
      seed: seedHandle,
      peers: peerHandles,
      daemons,
      dataRoot,
      pki,
      addDaemon,
      stopDaemon: (d, signal = "SIGTERM", graceMs = 5_000) => d.proc.stop(signal, graceMs),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
