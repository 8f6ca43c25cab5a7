// damselfly: the scheduler, a seed daemon and the HTTP origin on the origin
// host; one daemon per peer host (its API on 127.0.0.1:65000 inside its own
// namespace, its data plane on <host ip>:65002); then `damselfly get` in
// every peer namespace at once. Everything before the gets is setup, outside
// the clock, as a deployed Damselfly would be running already.
//
// The seed daemon's API listens on the origin host's address (10.214.0.1:65000),
// not loopback: the scheduler triggers seed peers through it.
//
// Three variants: "damselfly" (the defaults: the seed peer fetches a cold task
// and every peer takes it from there), "damselfly-peer" (--cold-start
// peer: the first requester fetches it from the origin itself) and
// "damselfly-proxy" (the seed's cold start, but each peer downloads with curl
// through its daemon's HTTP proxy, a proxy rule sending the origin's URLs
// through P2P: how a workload that already speaks HTTP uses the swarm, and a
// client that starts in milliseconds where `damselfly get` boots Node).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BIN, schedulerV8PoolArgs } from "../lib.js";
import { peerResult, type Mode, type ModeContext, type ModeRun, type PeerResult } from "./mode.js";
import { startOriginServer, type OriginServer } from "./origin.js";
import { jsonLine, runClient, startService, type Service } from "./proc.js";
import { ORIGIN_IP } from "./topology.js";
import { createCa, issueCert } from "../../src/common/tls/issue.js";
import type { Role } from "../../src/common/tls/roles.js";

export const SCHEDULER_PORT = 8002;
export const UPLOAD_PORT = 65002;

const SUMMARY_RE = /damselfly get: .*; from peers ([^,]+), from origin ([^,]+), local ([^;]+);.*$/m;

interface DaemonStats {
  name: string;
  fromPeers: number | null;
  fromSource: number | null;
  backToSource: string[];
  // msg -> count, for warnings and the download's notable events
  events: Record<string, number>;
}

const NOTABLE = new Set([
  "fetching from the origin",
  "parent dropped",
  "piece failed; retrying elsewhere",
  "no progress: asking the scheduler for other parents",
  "lost the scheduler stream; continuing with current parents",
  "task download failed",
  "scheduler unreachable",
  "scheduler unreachable: downloading directly from the origin",
]);

function daemonStats(svc: Service): DaemonStats {
  const s: DaemonStats = { name: svc.name, fromPeers: null, fromSource: null, backToSource: [], events: {} };
  for (const line of svc.lines) {
    const j = jsonLine(line);
    if (!j) continue;
    const msg = String(j["msg"]);
    const level = Number(j["level"]);
    if (NOTABLE.has(msg) || level >= 40) s.events[msg] = (s.events[msg] ?? 0) + 1;
    if (msg === "fetching from the origin") s.backToSource.push(String(j["reason"]));
    if (msg === "task downloaded") {
      s.fromPeers = Number(j["bytesFromPeers"]);
      s.fromSource = Number(j["bytesFromSource"]);
    }
  }
  return s;
}

// Decisions and finishes come from the scheduler's cumulative "peer summary"
// line (the last one: the scheduler logs it at shutdown too); the per-peer
// lines are debug-level.
function schedulerStats(svc: Service): Record<string, unknown> {
  const msgs: Record<string, number> = {};
  let summary: Record<string, unknown> | undefined;
  for (const line of svc.lines) {
    const j = jsonLine(line);
    if (!j) continue;
    const msg = String(j["msg"]);
    msgs[msg] = (msgs[msg] ?? 0) + 1;
    if (msg === "peer summary") summary = j;
  }
  const counts = (k: string) => (summary?.[k] && typeof summary[k] === "object" ? (summary[k] as Record<string, number>) : {});
  const decisions: Record<string, number> = {};
  for (const [kind, msg] of [
    ["registered", "peer registered"],
    ["rescheduled", "peer rescheduled"],
  ] as const) {
    for (const [d, n] of Object.entries(counts(kind))) decisions[`${msg}: ${d}`] = n;
  }
  return { messages: msgs, decisions, finishedVia: counts("finished") };
}

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
// Each peer's daemon API, in the peer's own network namespace (`get`'s
// default, the daemon's Unix socket, would be one path for every namespace).
const PEER_API = "http://127.0.0.1:65000";

export interface DamselflyOptions {
  // Bind the seed daemon's API to 127.0.0.1 (as README's cluster example
  // does) instead of the origin host's address. The scheduler triggers a seed
  // peer through that API at the seed's advertised IP, so on loopback every
  // trigger fails with ECONNREFUSED.
  seedApiLoopback?: boolean;
  // Extra flags for every peer daemon, the seed daemon and the scheduler.
  daemonArgs?: string[];
  seedArgs?: string[];
  schedulerArgs?: string[];
  // Node flags for the daemons (profiling).
  daemonNodeArgs?: string[];
  // Extra flags for every `damselfly get`.
  getArgs?: string[];
  // Bytes of a warm-up task every peer downloads before the clock (0: none).
  warmUpBytes?: number;
  // The downloading client: `damselfly get` (default) or curl through the
  // daemon's proxy.
  client?: "get" | "proxy";
  // Mutual TLS on every link and trusted piece digests: a CA and a
  // certificate per component (made in setup, outside the clock); each peer's
  // local API on a Unix socket. Without it the components bind the testbed's
  // addresses with --insecure.
  tls?: boolean;
}

// --tls-* for one component, its certificate naming its testbed address.
async function certArgs(pki: string, role: Role, name: string, ip: string): Promise<string[]> {
  const out = join(pki, name);
  await issueCert({ caDir: join(pki, "ca"), role, name, ips: [ip], out });
  return ["--tls-ca", join(out, "ca.crt"), "--tls-cert", join(out, "tls.crt"), "--tls-key", join(out, "tls.key")];
}

const PROXY = "127.0.0.1:65001";

// The proxy rule for the origin's URLs: everything the origin server serves.
function originRule(url: string): string {
  return "^" + new URL(url).origin.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "/";
}

export function damselflyMode(name: string, coldStart: "peer" | "seed" | undefined, opts: DamselflyOptions = {}): Mode {
  return {
    name,
    create(ctx: ModeContext): ModeRun {
      const o = ctx.tb.origin;
      let origin: OriginServer | undefined;
      let warmUpSent = 0;
      let scheduler: Service | undefined;
      let seed: Service | undefined;
      const daemons: Service[] = [];
      const pki = join(ctx.workDir, "pki");
      const security = new Map<string, string[]>();
      const apiOf = (id: string) => (opts.tls ? `unix:${join(ctx.workDir, id, "daemon.sock")}` : "127.0.0.1:65000");
      const daemonArgs = (id: string, ip: string, dataDir: string, isSeed: boolean, apiListen = apiOf(id)) => [
        process.execPath,
        ...(opts.daemonNodeArgs ?? []),
        BIN,
        "daemon",
        ...(isSeed ? ["--seed"] : []),
        "--hostname",
        id,
        "--scheduler",
        `${ORIGIN_IP}:${SCHEDULER_PORT}`,
        "--data-dir",
        dataDir,
        "--listen",
        apiListen,
        "--upload-listen",
        `${ip}:${UPLOAD_PORT}`,
        "--proxy-listen",
        PROXY,
        ...(opts.client === "proxy" && !isSeed ? ["--proxy-rules", originRule(origin!.url)] : []),
        ...(security.get(id) ?? []),
        ...((isSeed ? opts.seedArgs : opts.daemonArgs) ?? []),
      ];
      const daemonFlag = (id: string) => ["--daemon", opts.tls ? apiOf(id) : PEER_API];
      return {
        clientsAreAgents: false,
        async setup() {
          origin = await startOriginServer(o, ctx.file, join(ctx.logDir, "origin-server.log"));
          if (opts.tls) {
            await createCa(join(pki, "ca"));
            security.set("scheduler", await certArgs(pki, "scheduler", "scheduler", ORIGIN_IP));
            security.set("origin-seed", await certArgs(pki, "seed-peer", "origin-seed", o.ip));
            for (const p of ctx.peers) security.set(p.id, await certArgs(pki, "peer", p.id, p.ip));
          } else for (const id of ["scheduler", "origin-seed", ...ctx.peers.map((p) => p.id)]) security.set(id, ["--insecure"]);
          scheduler = startService(
            o.ns,
            "scheduler",
            // With the V8 pool `damselfly scheduler` would restart itself
            // with (src/cli/v8-pool.ts), so the pid measured is the scheduler.
            [
              process.execPath,
              ...schedulerV8PoolArgs(),
              BIN,
              "scheduler",
              "--listen",
              `${ORIGIN_IP}:${SCHEDULER_PORT}`,
              ...(coldStart ? ["--cold-start", coldStart] : []),
              ...(security.get("scheduler") ?? []),
              ...(opts.schedulerArgs ?? []),
            ],
            join(ctx.logDir, "scheduler.log"),
          );
          await scheduler.waitForLine((l) => jsonLine(l)?.["msg"] === "scheduler ready", 30_000, '"scheduler ready"');
          seed = startService(
            o.ns,
            "seed",
            daemonArgs("origin-seed", o.ip, join(ctx.workDir, "seed"), true, opts.seedApiLoopback ? "127.0.0.1:65000" : `${o.ip}:65000`),
            join(ctx.logDir, "daemon-seed.log"),
          );
          for (const p of ctx.peers) {
            mkdirSync(join(ctx.workDir, p.id), { recursive: true });
            daemons.push(startService(p.ns, p.id, daemonArgs(p.id, p.ip, join(ctx.workDir, p.id, "data"), false), join(ctx.logDir, `daemon-${p.id}.log`)));
          }
          // Ready, then connected to the scheduler (bounded; the daemon starts
          // its scheduler link right after it is ready).
          const isMsg = (m: string) => (l: string) => jsonLine(l)?.["msg"] === m;
          await Promise.all([seed, ...daemons].map((d) => d.waitForLine(isMsg("daemon ready"), 60_000, '"daemon ready"')));
          await Promise.all([seed, ...daemons].map((d) => d.waitForLine(isMsg("scheduler reachable"), 30_000, '"scheduler reachable"')));
          if (opts.warmUpBytes) {
            const url = `${origin.url}?prefix=${opts.warmUpBytes}`;
            // Bounded: start-up plus the bytes at 100 kB/s.
            const deadline = performance.now() + 60_000 + opts.warmUpBytes / 100;
            const results = await Promise.all(
              ctx.peers.map((p) =>
                runClient(
                  p.ns,
                  [
                    process.execPath,
                    BIN,
                    "get",
                    url,
                    "-O",
                    join(ctx.workDir, p.id, "warm-up.bin"),
                    "--no-progress",
                    ...daemonFlag(p.id),
                    ...(opts.getArgs ?? []),
                  ],
                  deadline,
                ),
              ),
            );
            const bad = results.findIndex((r) => r.code !== 0);
            if (bad >= 0) throw new Error(`warm-up download on ${ctx.peers[bad]!.id} failed: ${results[bad]!.stderr.trim().slice(-400)}`);
            warmUpSent = await origin.sent();
          }
        },
        agents: () => [
          ...(seed ? [{ name: "seed daemon", pid: seed.pid, role: "agent" as const }] : []),
          ...daemons.map((d) => ({ name: `daemon ${d.name}`, pid: d.pid, role: "agent" as const })),
          ...(scheduler ? [{ name: "scheduler", pid: scheduler.pid, role: "infra" as const }] : []),
          ...(origin ? [{ name: "origin-server (node)", pid: origin.service.pid, role: "infra" as const }] : []),
        ],
        async run(t0, deadlineMs) {
          const url = origin!.url;
          return Promise.all(
            ctx.peers.map(async (p): Promise<PeerResult> => {
              const output = join(ctx.workDir, p.id, "out.bin");
              // The harness checks every output's sha256 afterwards; `get`
              // checks it too, before it places the file.
              const argv =
                opts.client === "proxy"
                  ? ["curl", "-sS", "-f", "--proxy", `http://${PROXY}`, "-o", output, url]
                  : [
                      process.execPath,
                      BIN,
                      "get",
                      url,
                      "-O",
                      output,
                      "--digest",
                      `sha256:${ctx.digest}`,
                      "--no-progress",
                      ...daemonFlag(p.id),
                      ...(opts.getArgs ?? []),
                    ];
              const r = await runClient(p.ns, argv, deadlineMs);
              const summary = SUMMARY_RE.exec(r.stderr)?.[0];
              return peerResult(p.id, r, t0, output, () => r.stderr.trim().slice(-800), summary ? { summary } : {});
            }),
          );
        },
        originSent: async () => (await origin!.sent()) - warmUpSent,
        async analyze(peers) {
          const notes: string[] = [];
          const perDaemon = daemons.map(daemonStats);
          for (const d of perDaemon) {
            const pr = peers.find((p) => p.peer === d.name);
            if (pr && d.fromPeers !== null) {
              pr.fromPeersBytes = d.fromPeers;
              pr.fromOriginBytes = d.fromSource!;
            }
          }
          const seedStats = seed ? daemonStats(seed) : undefined;
          // Stopped first, so its last "peer summary" line (logged at shutdown) is in.
          await scheduler?.stop();
          const sched = scheduler ? schedulerStats(scheduler) : {};
          const wentToOrigin = perDaemon.filter((d) => d.backToSource.length > 0);
          const fromOrigin = perDaemon.reduce((a, d) => a + (d.fromSource ?? 0), 0);
          const fromPeers = perDaemon.reduce((a, d) => a + (d.fromPeers ?? 0), 0);
          notes.push(
            `${wentToOrigin.length} of ${perDaemon.length} peers fetched from the origin` +
              (wentToOrigin.length
                ? ` (${wentToOrigin.map((d) => `${d.name}: ${MiB(d.fromSource ?? 0)}, reason "${d.backToSource.join('", "')}"`).join("; ")})`
                : ""),
          );
          notes.push(`peers got ${MiB(fromPeers)} from peers and ${MiB(fromOrigin)} from the origin in total (daemon "task downloaded" lines)`);
          if (seedStats) {
            notes.push(
              seedStats.fromPeers === null
                ? "seed daemon: no task downloaded while measured"
                : `seed daemon: ${MiB(seedStats.fromPeers)} from peers, ${MiB(seedStats.fromSource ?? 0)} from the origin`,
            );
          }
          const events: Record<string, number> = {};
          for (const d of perDaemon) for (const [k, v] of Object.entries(d.events)) events[k] = (events[k] ?? 0) + v;
          if (Object.keys(events).length)
            notes.push(
              `peer daemon events: ${Object.entries(events)
                .map(([k, v]) => `${k} x${v}`)
                .join(", ")}`,
            );
          const dec = (sched as { decisions?: Record<string, number> }).decisions;
          if (dec && Object.keys(dec).length)
            notes.push(
              `scheduler: ${Object.entries(dec)
                .map(([k, v]) => `${k} x${v}`)
                .join(", ")}`,
            );
          if (opts.warmUpBytes)
            notes.push(
              `daemons warmed up first: every peer downloaded a ${MiB(opts.warmUpBytes)} task through the swarm before the clock (not counted; scheduler counts include it)`,
            );
          return {
            extra: {
              client: opts.client ?? "get",
              tls: opts.tls === true,
              getArgs: opts.getArgs,
              warmUpBytes: opts.warmUpBytes ?? 0,
              coldStart: coldStart ?? "default",
              daemonArgs: opts.daemonArgs,
              seedArgs: opts.seedArgs,
              schedulerArgs: opts.schedulerArgs,
              seedApi: opts.seedApiLoopback ? "127.0.0.1:65000" : `${o.ip}:65000`,
              perDaemon,
              seed: seedStats,
              scheduler: sched,
            },
            notes,
          };
        },
        async teardown() {
          await Promise.all(daemons.map((d) => d.stop()));
          await seed?.stop();
          await scheduler?.stop();
          await origin?.stop();
        },
      };
    },
  };
}
