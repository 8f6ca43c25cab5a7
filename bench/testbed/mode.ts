import type { ClientResult } from "./proc.js";
// What every distribution mode provides, and the one place that measures a
// mode's run: interface byte counters, the machine's CPU busy share, the CPU
// time of the mode's long-lived processes, per-peer completion, and a sha256
// check of every output once the clock has stopped.
import { createReadStream } from "node:fs";
import { createHash } from "node:crypto";
import { cpus } from "node:os";
import { cpuSampler, processCpu, sleep, type CpuAccount, type CpuShare } from "./proc.js";
import type { Host, LinkBytes, Testbed } from "./topology.js";

export interface ModeContext {
  readonly tb: Testbed;
  // The N peers taking part (the testbed may have more).
  readonly peers: readonly Host[];
  // The file on the origin host, its size and sha256 (hex).
  readonly file: string;
  readonly size: number;
  readonly digest: string;
  // Scratch space for this run (removed afterwards) and logs (kept).
  readonly workDir: string;
  readonly logDir: string;
  // CPU of everything the benchmark runs (when cpuacct is available).
  readonly account?: CpuAccount;
}

export interface PeerResult {
  peer: string;
  ok: boolean;
  // Seconds from the start of the clock to the client's exit.
  seconds: number | null;
  exit: number | string | null;
  // CPU seconds of the client process (and what it waited for).
  cpuS: number | null;
  userS?: number | null;
  // Where the client wrote the file (checked against the digest afterwards).
  output?: string;
  // Damselfly: where the bytes came from (daemon log) and get's summary line.
  fromPeersBytes?: number;
  fromOriginBytes?: number;
  summary?: string;
  error?: string;
}

export interface Agent {
  name: string;
  pid: number;
  // agent: moves the file's bytes (its CPU counts in CPU s/GiB); infra:
  // tracker, scheduler, the HTTP origin next to a seed.
  role: "agent" | "infra";
}

export interface ModeRun {
  // Whether the clients' own CPU counts as agent CPU (aria2c leechers, curl)
  // or is reported apart (damselfly get: the daemons do the transfer).
  readonly clientsAreAgents: boolean;
  // Starts what exists before the clock starts (servers, daemons).
  setup(): Promise<void>;
  // Long-lived processes whose CPU is measured over the run (asked at the
  // start and again at the end, so ones started during the run count from 0).
  agents(): Agent[];
  // The timed part: everything from t0 until the last client exits or the
  // deadline (a performance.now() instant) passes.
  run(t0: number, deadlineMs: number): Promise<PeerResult[]>;
  // Bytes the HTTP origin served, if this mode has one.
  originSent?(): Promise<number>;
  // After the clock stopped: figures and observations from logs.
  analyze(peers: PeerResult[]): Promise<{ extra: Record<string, unknown>; notes: string[] }>;
  teardown(): Promise<void>;
}

export interface Mode {
  readonly name: string;
  create(ctx: ModeContext): ModeRun;
}

// One second of the run: bytes all peers received and sent, and the origin host sent.
export interface LinkSample {
  t: number;
  peersRx: number;
  peersTx: number;
  originTx: number;
  // CPU the agents (the processes moving the file) took in that second, in
  // cores; with the machine's busy share it shows what a slow start waits on.
  agentCores: number;
}

export interface RunMeasurement {
  timeline: LinkSample[];
  mode: string;
  n: number;
  sizeBytes: number;
  timeoutS: number;
  completed: number;
  lastS: number | null;
  medianS: number | null;
  // Last completion among those that completed (even if some did not).
  lastCompletedS: number | null;
  originEgressBytes: number;
  originHttpBytes: number | null;
  // Bytes sent by all hosts (origin and peers): the swarm's upload volume.
  uploadedBytes: number;
  // Packets sent by all hosts: data segments, ACKs and control traffic.
  sentPackets: number;
  // TCP segments all hosts handed to their network stacks (each resend
  // counted again) and retransmitted, over the run.
  tcp: { congestionControl: string; outSegs: number; retransSegs: number };
  peersUploadedBytes: number;
  // Bytes each host sent and received during the run (interface counters).
  hosts: Record<string, LinkBytes>;
  cpu: CpuShare;
  // Machine busy share in the second before the clock started (testbed set
  // up and idle): anything else running on the machine shows here.
  backgroundBusy: number;
  // CPU of the testbed's own processes as a share of the machine over the
  // run: everything this benchmark started (cgroup), or else the agents,
  // infra and clients measured one by one. cpu.mean minus this is kernel
  // networking (irq/softirq) plus whatever else ran on the machine.
  testbedProcShare: number;
  testbedShareSource: "cgroup" | "processes";
  // CPU seconds over the run.
  agentCpuS: number;
  infraCpuS: number;
  clientCpuS: number;
  agentCpuSPerGiB: number;
  // The user-mode part of agentCpuS: free of the shaping's softirq work that
  // the kernel charges to whichever process it interrupts.
  agentUserS: number;
  agentUserSPerGiB: number;
  processes: Array<{ name: string; role: string; cpuS: number | null; userS: number | null }>;
  peers: PeerResult[];
  extra: Record<string, unknown>;
  notes: string[];
}

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

function delta(a: Map<string, LinkBytes>, b: Map<string, LinkBytes>, id: string): LinkBytes {
  const x = a.get(id)!;
  const y = b.get(id)!;
  return { tx: y.tx - x.tx, rx: y.rx - x.rx, txPackets: y.txPackets - x.txPackets, rxPackets: y.rxPackets - x.rxPackets };
}

export async function measureMode(mode: Mode, ctx: ModeContext, timeoutS: number): Promise<RunMeasurement> {
  const run = mode.create(ctx);
  try {
    await run.setup();
    // Let setup chatter (announces, ARP) settle before the counters start,
    // and see how busy the machine is without a transfer.
    await sleep(500);
    const idle = cpuSampler();
    await sleep(1_000);
    const backgroundBusy = idle.stop().mean;
    const tcp0 = await ctx.tb.tcpCounters();
    const before = ctx.tb.counters();
    const cpu0 = new Map<number, { userS: number; systemS: number }>();
    for (const a of run.agents()) cpu0.set(a.pid, processCpu(a.pid) ?? { userS: 0, systemS: 0 });
    const sampler = cpuSampler();
    const acct0 = ctx.account?.usageS();
    const t0 = performance.now();
    // Bytes the peers received and sent, per second: how full the links were
    // at the start, in the middle and at the end.
    const timeline: LinkSample[] = [];
    let last = before;
    let lastAt = t0;
    const agentCpu = (): number => {
      let sum = 0;
      for (const a of run.agents()) {
        if (a.role !== "agent") continue;
        const c = processCpu(a.pid);
        if (c) sum += c.userS + c.systemS;
      }
      return sum;
    };
    let lastAgentCpu = agentCpu();
    const tick = setInterval(() => {
      const at = performance.now();
      const cpuNow = agentCpu();
      const agentCores = Math.round(((cpuNow - lastAgentCpu) / ((at - lastAt) / 1000)) * 100) / 100;
      lastAgentCpu = cpuNow;
      lastAt = at;
      const now = ctx.tb.counters();
      let rx = 0;
      let tx = 0;
      for (const p of ctx.peers) {
        const d = delta(last, now, p.id);
        rx += d.rx;
        tx += d.tx;
      }
      timeline.push({ t: Math.round(at - t0) / 1000, peersRx: rx, peersTx: tx, originTx: delta(last, now, ctx.tb.origin.id).tx, agentCores });
      last = now;
    }, 1_000);
    const peers = await run.run(t0, t0 + timeoutS * 1000).finally(() => clearInterval(tick));
    const cpu = sampler.stop();
    const acct1 = ctx.account?.usageS();
    const processes = run.agents().map((a) => {
      const now = processCpu(a.pid);
      const was = cpu0.get(a.pid) ?? { userS: 0, systemS: 0 };
      return {
        name: a.name,
        role: a.role,
        cpuS: now === undefined ? null : now.userS + now.systemS - was.userS - was.systemS,
        userS: now === undefined ? null : now.userS - was.userS,
      };
    });
    const after = ctx.tb.counters();
    const tcp1 = await ctx.tb.tcpCounters();
    let outSegs = 0;
    let retransSegs = 0;
    for (const [id, c] of tcp1) {
      const c0 = tcp0.get(id);
      if (!c0) continue;
      outSegs += c.outSegs - c0.outSegs;
      retransSegs += c.retransSegs - c0.retransSegs;
    }
    const originHttpBytes = run.originSent ? await run.originSent().catch(() => null) : null;
    const { extra, notes } = await run.analyze(peers);

    for (const p of peers) {
      if (!p.ok || !p.output) continue;
      const got = await sha256File(p.output).catch((e: Error) => `unreadable: ${e.message}`);
      if (got !== ctx.digest) {
        p.ok = false;
        p.error = `output ${p.output} has sha256 ${got}, expected ${ctx.digest}`;
      }
    }
    const done = peers.filter((p) => p.ok && p.seconds !== null).map((p) => p.seconds!);
    const all = done.length === peers.length;
    const origin = delta(before, after, ctx.tb.origin.id);
    let peersUp = 0;
    const hosts: Record<string, LinkBytes> = { [ctx.tb.origin.id]: origin };
    for (const p of ctx.peers) {
      hosts[p.id] = delta(before, after, p.id);
      peersUp += hosts[p.id]!.tx;
    }
    const uploadedBytes = origin.tx + peersUp;
    const sentPackets = Object.values(hosts).reduce((a, h) => a + h.txPackets, 0);
    const sum = (xs: Array<number | null | undefined>) => xs.reduce<number>((a, x) => a + (x ?? 0), 0);
    const clientCpuS = sum(peers.map((p) => p.cpuS));
    const agentCpuS = sum(processes.filter((p) => p.role === "agent").map((p) => p.cpuS)) + (run.clientsAreAgents ? clientCpuS : 0);
    const agentUserS = sum(processes.filter((p) => p.role === "agent").map((p) => p.userS)) + (run.clientsAreAgents ? sum(peers.map((p) => p.userS)) : 0);
    const infraCpuS = sum(processes.filter((p) => p.role === "infra").map((p) => p.cpuS));
    return {
      mode: mode.name,
      n: ctx.peers.length,
      sizeBytes: ctx.size,
      timeoutS,
      completed: done.length,
      lastS: all ? Math.max(...done) : null,
      medianS: all ? median(done) : null,
      lastCompletedS: done.length ? Math.max(...done) : null,
      originEgressBytes: origin.tx,
      originHttpBytes,
      uploadedBytes,
      sentPackets,
      tcp: { congestionControl: ctx.tb.congestionControl, outSegs, retransSegs },
      peersUploadedBytes: peersUp,
      hosts,
      cpu,
      backgroundBusy,
      testbedProcShare:
        (acct0 !== undefined && acct1 !== undefined ? acct1 - acct0 : agentCpuS + infraCpuS + (run.clientsAreAgents ? 0 : clientCpuS)) /
        (cpu.seconds * cpus().length),
      testbedShareSource: acct0 !== undefined ? "cgroup" : "processes",
      agentCpuS,
      infraCpuS,
      clientCpuS: run.clientsAreAgents ? 0 : clientCpuS,
      agentCpuSPerGiB: uploadedBytes > 0 ? agentCpuS / (uploadedBytes / 2 ** 30) : 0,
      agentUserS,
      agentUserSPerGiB: uploadedBytes > 0 ? agentUserS / (uploadedBytes / 2 ** 30) : 0,
      processes,
      peers,
      timeline,
      extra,
      notes,
    };
  } finally {
    await run.teardown();
  }
}

// One peer's outcome from its client process (exit code, time since t0, CPU).
export function peerResult(peer: string, r: ClientResult, t0: number, output: string, errorText: () => string, extra: Partial<PeerResult> = {}): PeerResult {
  const ok = r.code === 0;
  return {
    peer,
    ok,
    seconds: ok ? (r.endMs - t0) / 1000 : null,
    exit: r.timedOut ? "timeout" : (r.code ?? r.signal),
    cpuS: r.cpuS ?? null,
    userS: r.userS ?? null,
    output,
    ...extra,
    ...(ok ? {} : { error: errorText() }),
  };
}
