// The results table printed on stdout, and the per-peer detail lines.
import type { Bound } from "./bound.js";
import type { RunMeasurement } from "./mode.js";
import { GOODPUT_CEILING, type ShapingCheck } from "./shaping.js";

export interface ResultRow {
  run: RunMeasurement;
  bound: Bound;
}

const s = (x: number | null) => (x === null ? "-" : `${x.toFixed(1)}s`);
const r = (x: number | null, t: number) => (x === null ? "-" : (x / t).toFixed(2));
const gib = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);
const pct = (x: number) => `${Math.round(x * 100)}%`;
export const mbit = (bps: number) => `${(bps / 1e6).toFixed(bps % 1e6 ? 1 : 0)} Mbit/s`;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

export function resultsTable(rows: ResultRow[]): string {
  const head = [
    "mode",
    "N",
    "T*",
    "last",
    "median",
    "last/T*",
    "med/T*",
    "done",
    "origin egress",
    "x file",
    "HTTP origin",
    "CPU busy",
    "max 1s",
    "agent CPU",
    "CPU s/GiB up",
    "user s/GiB",
    "swarm up",
  ];
  const body = rows.map(({ run, bound }) => [
    run.mode,
    String(run.n),
    s(bound.tStarS),
    run.lastS === null ? `>${s(run.lastCompletedS)}` : s(run.lastS),
    s(run.medianS),
    r(run.lastS, bound.tStarS),
    r(run.medianS, bound.tStarS),
    `${run.completed}/${run.n}`,
    gib(run.originEgressBytes),
    (run.originEgressBytes / run.sizeBytes).toFixed(2),
    run.originHttpBytes === null ? "-" : gib(run.originHttpBytes),
    pct(run.cpu.mean),
    pct(run.cpu.max1s),
    `${run.agentCpuS.toFixed(1)}s`,
    run.agentCpuSPerGiB.toFixed(2),
    run.agentUserSPerGiB.toFixed(2),
    gib(run.uploadedBytes),
  ]);
  return table(head, body);
}

export function boundLine(b: Bound, n: number, sizeBytes: number, B: number, d: number, u: number): string {
  return (
    `N=${n}, S=${gib(sizeBytes)}, B=${mbit(B)}, d=${mbit(d)}, u=${mbit(u)}: T* = ${b.tStarS.toFixed(1)} s (${b.limit}; ` +
    `S/B ${b.serverS.toFixed(1)} s, S/d ${b.peerDownloadS.toFixed(1)} s, NS/(B+Nu) ${b.swarmUploadS.toFixed(1)} s; client-server N*S/B ${b.clientServerS.toFixed(1)} s)`
  );
}

export function shapingLines(checks: ShapingCheck[]): string[] {
  return checks.map(
    (c) =>
      `  ${c.name.padEnd(14)} ${c.path.padEnd(28)} ${(c.goodputBps / 1e6).toFixed(1).padStart(6)} Mbit/s goodput, limit ${mbit(c.limitBps)} = ${pct(c.ratio)} ` +
      `(TCP/IP/Ethernet ceiling ${pct(GOODPUT_CEILING)})`,
  );
}

// How full the peers' download links were, in tenths of the run: the share
// of N x d the swarm received each tenth (the bound needs ~100 % throughout).
export function linkUseLine(run: RunMeasurement, peerRateBps: number): string | undefined {
  const tl = run.timeline;
  if (!tl || tl.length < 3 || !run.lastCompletedS) return undefined;
  const cap = (run.n * peerRateBps) / 8;
  const parts: string[] = [];
  for (let k = 0; k < 10; k++) {
    const from = (run.lastCompletedS * k) / 10;
    const to = (run.lastCompletedS * (k + 1)) / 10;
    const xs = tl.filter((s) => s.t > from && s.t <= to + 0.5);
    if (xs.length === 0) continue;
    parts.push(pct(xs.reduce((a, s) => a + s.peersRx, 0) / xs.length / cap));
  }
  const total = tl.reduce((a, s) => a + s.peersRx, 0);
  return `peers' download links used, per tenth of the run: ${parts.join(" ")} (mean ${pct(total / (run.lastCompletedS * cap))})`;
}

// The first seconds one by one: how full the peers' download links were,
// how busy the machine was and how much of it the agents took. A start that
// waits on the CPU (processes booting, cold code) shows as a busy machine
// with empty links.
export function startLine(run: RunMeasurement, peerRateBps: number, seconds = 8): string | undefined {
  const tl = run.timeline.slice(0, seconds);
  if (tl.length < 2) return undefined;
  const cap = (run.n * peerRateBps) / 8;
  const links = tl.map((s) => pct(s.peersRx / cap)).join(" ");
  const busy = run.cpu.perSecond
    .slice(0, tl.length)
    .map((x) => pct(x))
    .join(" ");
  const agents = tl.map((s) => s.agentCores.toFixed(1)).join(" ");
  return `first ${tl.length} s, second by second: links used ${links}; machine busy ${busy}; agents' CPU, clients not counted (cores) ${agents}`;
}

export function detailLines(run: RunMeasurement): string[] {
  const out: string[] = [];
  const procs = run.processes.filter((p) => p.cpuS !== null).map((p) => `${p.name} ${p.cpuS!.toFixed(1)}s`);
  out.push(
    `  [${run.mode} N=${run.n}] CPU over ${run.cpu.seconds.toFixed(1)} s: agents ${run.agentCpuS.toFixed(1)} s (user ${run.agentUserS.toFixed(1)} s), infra ${run.infraCpuS.toFixed(1)} s` +
      (run.clientCpuS ? `, clients ${run.clientCpuS.toFixed(1)} s` : "") +
      `; peers uploaded ${gib(run.peersUploadedBytes)}, origin ${gib(run.originEgressBytes)}`,
  );
  if (run.sentPackets) {
    out.push(
      `    packets sent by all hosts: ${(run.sentPackets / 1e6).toFixed(2)} M, ${Math.round(run.sentPackets / (run.uploadedBytes / 2 ** 20))} per MiB sent (mean ${Math.round(run.uploadedBytes / run.sentPackets)} B)`,
    );
  }
  if (run.tcp.outSegs > 0) {
    // uploadedBytes counts frames: 1514 bytes each when full (1448 of payload).
    const needed = run.uploadedBytes / 1514;
    out.push(
      `    TCP (${run.tcp.congestionControl}): ${(run.tcp.outSegs / 1e6).toFixed(2)} M segments sent, ${(run.tcp.outSegs / needed).toFixed(2)}x the full-size frames that crossed the links (pure ACKs count as segments too); ${(run.tcp.retransSegs / 1e3).toFixed(1)} k retransmitted`,
    );
  }
  const b = run.cpu.breakdown;
  out.push(
    `    machine CPU: busy ${pct(run.cpu.mean)} (user ${pct(b.user)}, system ${pct(b.system)}, irq+softirq ${pct(b.softirq)}; steal ${pct(b.steal)}), max 1 s ${pct(run.cpu.max1s)}, ${pct(run.cpu.saturatedShare)} of seconds >= 95% busy; ` +
      `testbed processes ${pct(run.testbedProcShare)} (${run.testbedShareSource}); busy before the clock ${pct(run.backgroundBusy)}`,
  );
  const other = run.cpu.mean - run.testbedProcShare - b.softirq;
  if (run.testbedShareSource === "cgroup" && other > 0.05) {
    out.push(`    NOTE: ~${pct(other)} of the machine went to processes outside this benchmark during the run (another workload shares the CPUs)`);
  }
  if (procs.length <= 6) out.push(`    processes: ${procs.join(", ")}`);
  else {
    const daemons = run.processes.filter((p) => p.name.startsWith("daemon ") && p.cpuS !== null).map((p) => p.cpuS!);
    const other = run.processes.filter((p) => !p.name.startsWith("daemon ") && p.cpuS !== null).map((p) => `${p.name} ${p.cpuS!.toFixed(1)}s`);
    if (daemons.length)
      out.push(
        `    peer daemons: ${daemons.length} x, ${Math.min(...daemons).toFixed(1)}-${Math.max(...daemons).toFixed(1)} s each, ${daemons.reduce((a, b) => a + b, 0).toFixed(1)} s total; ${other.join(", ")}`,
      );
  }
  const times = run.peers.map((p) => `${p.peer} ${p.ok ? p.seconds!.toFixed(1) : `FAIL(${p.exit})`}`).join(" ");
  out.push(`    per peer (s): ${times}`);
  const clientCpu = run.peers.map((p) => p.cpuS).filter((x): x is number => x !== null);
  if (clientCpu.length)
    out.push(
      `    client CPU: ${Math.min(...clientCpu).toFixed(2)}-${Math.max(...clientCpu).toFixed(2)} s each, ${clientCpu.reduce((a, b) => a + b, 0).toFixed(1)} s total`,
    );
  for (const p of run.peers) {
    if (!p.ok && p.error) out.push(`    ${p.peer} failed: ${p.error.replace(/\s+/g, " ").slice(0, 400)}`);
  }
  const ups = Object.entries(run.hosts)
    .filter(([id]) => id !== "o")
    .map(([id, b]) => [id, b.tx] as const)
    .sort((a, b) => b[1] - a[1]);
  if (ups.length) {
    const top = ups.slice(0, 4).map(([id, tx]) => `${id} ${(tx / run.sizeBytes).toFixed(2)}`);
    const rest = ups.slice(4).map(([, tx]) => tx / run.sizeBytes);
    out.push(`    peer uploads (x file): ${top.join(", ")}` + (rest.length ? `; others ${Math.min(...rest).toFixed(2)}-${Math.max(...rest).toFixed(2)}` : ""));
  }
  const split = run.peers.filter((p) => p.fromPeersBytes !== undefined);
  if (split.length)
    out.push(
      `    from peers / from origin (MiB): ${split.map((p) => `${p.peer} ${(p.fromPeersBytes! / 2 ** 20).toFixed(0)}/${(p.fromOriginBytes! / 2 ** 20).toFixed(0)}`).join(" ")}`,
    );
  for (const n of run.notes) out.push(`    ${n}`);
  if (run.cpu.mean > 0.85 || run.cpu.saturatedShare > 0.25) {
    out.push(
      `    NOTE: the machine's CPU was near saturation (mean ${pct(run.cpu.mean)}, ${pct(run.cpu.saturatedShare)} of seconds >= 95% busy): times may be CPU-bound, not link-bound`,
    );
  }
  return out;
}
