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
//
// The options also shape the cluster (more schedulers and seeds on the
// origin host: damselfly-layout.ts) and run a hook alongside the timed part;
// damselfly-chaos (mode-chaos.ts) uses both to kill a scheduler and a seed
// mid-swarm.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BIN, schedulerV8PoolArgs } from "../lib.js";
import { peerResult, type Mode, type ModeContext, type ModeRun, type PeerResult } from "./mode.js";
import { startOriginServer, type OriginServer } from "./origin.js";
import { daemonStats, MiB, schedulerStats, SUMMARY_RE } from "./damselfly-logs.js";
import { jsonLine, runClient, startService, type Service } from "./proc.js";
import { ORIGIN_IP } from "./topology.js";
import {
  SCHEDULER_PORT,
  schedulerSpecs,
  seedSpecs,
  UPLOAD_PORT,
  type ClusterView,
  type Running,
  type RunHook,
  type SchedulerSpec,
  type SeedSpec,
} from "./damselfly-layout.js";
import { createCa, issueCert } from "../../src/common/tls/issue.js";
import type { Role } from "../../src/common/tls/roles.js";

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
  // The cluster's shape on the origin host: scheduler ports (default one,
  // SCHEDULER_PORT) and seed daemons (default 1). Every daemon is given every
  // scheduler.
  schedulerPorts?: readonly number[];
  seeds?: number;
  // Runs alongside the timed part (e.g. faults: mode-chaos.ts).
  during?: (cluster: ClusterView) => RunHook;
  // Another origin (a model on a hub or S3 fixture: mode-model.ts) and the
  // client command for it, given the peer's directory, the origin's URL and
  // the --daemon flag; output is what the client writes.
  startOrigin?: (ctx: ModeContext) => Promise<OriginServer>;
  clientCommand?: (peerDir: string, url: string, daemon: string[]) => { argv: string[]; output: string };
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

const countsLine = (label: string, counts: Record<string, number> | undefined): string[] =>
  counts && Object.keys(counts).length
    ? [
        `${label}: ${Object.entries(counts)
          .map(([k, v]) => `${k} x${v}`)
          .join(", ")}`,
      ]
    : [];

export function damselflyMode(name: string, coldStart: "peer" | "seed" | undefined, opts: DamselflyOptions = {}): Mode {
  return {
    name,
    create(ctx: ModeContext): ModeRun {
      const o = ctx.tb.origin;
      let origin: OriginServer | undefined;
      let warmUpSent = 0;
      const schedulerList = schedulerSpecs(opts.schedulerPorts ?? [SCHEDULER_PORT]);
      const seedList = seedSpecs(opts.seeds ?? 1, ctx, opts.seedApiLoopback === true);
      const schedulers: Running<SchedulerSpec>[] = [];
      const seeds: Running<SeedSpec>[] = [];
      const daemons: Service[] = [];
      let hook: RunHook | undefined;
      const pki = join(ctx.workDir, "pki");
      const security = new Map<string, string[]>();
      const apiOf = (id: string) => (opts.tls ? `unix:${join(ctx.workDir, id, "daemon.sock")}` : "127.0.0.1:65000");
      const daemonArgs = (id: string, dataDir: string, isSeed: boolean, api: string, upload: string, proxy: string) => [
        process.execPath,
        ...(opts.daemonNodeArgs ?? []),
        BIN,
        "daemon",
        ...(isSeed ? ["--seed"] : []),
        "--hostname",
        id,
        "--scheduler",
        schedulerList.map((s) => s.address).join(","),
        "--data-dir",
        dataDir,
        "--listen",
        api,
        "--upload-listen",
        upload,
        "--proxy-listen",
        proxy,
        ...(opts.client === "proxy" && !isSeed ? ["--proxy-rules", originRule(origin!.url)] : []),
        ...(security.get(id) ?? []),
        ...((isSeed ? opts.seedArgs : opts.daemonArgs) ?? []),
      ];
      const daemonFlag = (id: string) => ["--daemon", opts.tls ? apiOf(id) : PEER_API];
      const isMsg = (m: string) => (l: string) => jsonLine(l)?.["msg"] === m;
      const originSent = async () => (await origin!.sent()) - warmUpSent;
      const startSchedulers = async () => {
        for (const spec of schedulerList) {
          const svc = startService(
            o.ns,
            spec.name,
            // With the V8 pool `damselfly scheduler` would restart itself
            // with (src/cli/v8-pool.ts), so the pid measured is the scheduler.
            [
              process.execPath,
              ...schedulerV8PoolArgs(),
              BIN,
              "scheduler",
              "--listen",
              spec.address,
              ...(coldStart ? ["--cold-start", coldStart] : []),
              ...(security.get(spec.name) ?? []),
              ...(opts.schedulerArgs ?? []),
            ],
            join(ctx.logDir, spec.log),
          );
          schedulers.push({ spec, svc });
        }
        await Promise.all(schedulers.map((s) => s.svc.waitForLine(isMsg("scheduler ready"), 30_000, '"scheduler ready"')));
      };
      // Ready, then connected to every scheduler (bounded; the daemon starts
      // its scheduler link right after it is ready).
      const daemonsReady = async (all: Service[]) => {
        await Promise.all(all.map((d) => d.waitForLine(isMsg("daemon ready"), 60_000, '"daemon ready"')));
        await Promise.all(
          all.map((d) => {
            const seen = new Set<unknown>();
            const reached = (l: string) => {
              const j = jsonLine(l);
              if (j?.["msg"] === "scheduler reachable") seen.add(j["scheduler"]);
              return seen.size >= schedulerList.length;
            };
            return d.waitForLine(reached, 30_000, `"scheduler reachable" for ${schedulerList.length} scheduler(s)`);
          }),
        );
      };
      return {
        clientsAreAgents: false,
        async setup() {
          origin = await (opts.startOrigin?.(ctx) ?? startOriginServer(o, ctx.file, join(ctx.logDir, "origin-server.log")));
          const ids = [...schedulerList.map((s) => s.name), ...seedList.map((s) => s.hostname), ...ctx.peers.map((p) => p.id)];
          if (opts.tls) {
            await createCa(join(pki, "ca"));
            for (const s of schedulerList) security.set(s.name, await certArgs(pki, "scheduler", s.name, ORIGIN_IP));
            for (const s of seedList) security.set(s.hostname, await certArgs(pki, "seed-peer", s.hostname, o.ip));
            for (const p of ctx.peers) security.set(p.id, await certArgs(pki, "peer", p.id, p.ip));
          } else for (const id of ids) security.set(id, ["--insecure"]);
          await startSchedulers();
          for (const spec of seedList) {
            const argv = daemonArgs(spec.hostname, spec.dataDir, true, spec.api, spec.upload, spec.proxy);
            seeds.push({ spec, svc: startService(o.ns, spec.name, argv, join(ctx.logDir, spec.log)) });
          }
          for (const p of ctx.peers) {
            mkdirSync(join(ctx.workDir, p.id), { recursive: true });
            const argv = daemonArgs(p.id, join(ctx.workDir, p.id, "data"), false, apiOf(p.id), `${p.ip}:${UPLOAD_PORT}`, PROXY);
            daemons.push(startService(p.ns, p.id, argv, join(ctx.logDir, `daemon-${p.id}.log`)));
          }
          await daemonsReady([...seeds.map((s) => s.svc), ...daemons]);
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
          ...seeds.map((s) => ({ name: s.spec.agent, pid: s.svc.pid, role: "agent" as const })),
          ...daemons.map((d) => ({ name: `daemon ${d.name}`, pid: d.pid, role: "agent" as const })),
          ...schedulers.map((s) => ({ name: s.spec.name, pid: s.svc.pid, role: "infra" as const })),
          ...(origin ? [{ name: `${origin.service.name} (node)`, pid: origin.service.pid, role: "infra" as const }] : []),
        ],
        async run(t0, deadlineMs) {
          const url = origin!.url;
          hook = opts.during?.({ ctx, url, schedulers, seeds, daemons, originSent });
          hook?.start(t0);
          const clients = Promise.all(
            ctx.peers.map(async (p): Promise<PeerResult> => {
              const custom = opts.clientCommand?.(join(ctx.workDir, p.id), url, daemonFlag(p.id));
              const output = custom?.output ?? join(ctx.workDir, p.id, "out.bin");
              // The harness checks every output's sha256 afterwards; `get`
              // checks it too, before it places the file.
              const argv = custom
                ? custom.argv
                : opts.client === "proxy"
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
          return clients.finally(() => hook?.stop());
        },
        originSent,
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
          const seedStats = seeds.map((s) => daemonStats(s.svc));
          // Stopped first, so their last "peer summary" line (logged at shutdown) is in.
          await Promise.all(schedulers.map((s) => s.svc.stop()));
          const sched = schedulers.map((s) => schedulerStats(s.svc));
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
          for (const [i, st] of seedStats.entries()) {
            const label = seeds[i]!.spec.agent;
            notes.push(
              st.fromPeers === null
                ? `${label}: no task downloaded while measured`
                : `${label}: ${MiB(st.fromPeers)} from peers, ${MiB(st.fromSource ?? 0)} from the origin`,
            );
          }
          const events: Record<string, number> = {};
          for (const d of perDaemon) for (const [k, v] of Object.entries(d.events)) events[k] = (events[k] ?? 0) + v;
          notes.push(...countsLine("peer daemon events", events));
          for (const [i, st] of sched.entries()) notes.push(...countsLine(schedulers[i]!.spec.name, (st as { decisions?: Record<string, number> }).decisions));
          if (opts.warmUpBytes)
            notes.push(
              `daemons warmed up first: every peer downloaded a ${MiB(opts.warmUpBytes)} task through the swarm before the clock (not counted; scheduler counts include it)`,
            );
          const during = hook?.report();
          if (during) notes.push(...during.notes);
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
              seedApi: seedList.map((s) => s.api).join(","),
              perDaemon,
              seed: seedStats[0],
              scheduler: sched[0] ?? {},
              ...(seeds.length > 1 ? { seeds: seedStats } : {}),
              ...(schedulers.length > 1 ? { schedulers: sched } : {}),
              ...(during?.extra ?? {}),
            },
            notes,
          };
        },
        async teardown() {
          await hook?.stop();
          await Promise.all(daemons.map((d) => d.stop()));
          await Promise.all(seeds.map((s) => s.svc.stop()));
          await Promise.all(schedulers.map((s) => s.svc.stop()));
          await origin?.stop();
        },
      };
    },
  };
}
