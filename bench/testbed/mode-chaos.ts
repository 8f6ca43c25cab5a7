// damselfly-chaos: the damselfly mode with two schedulers (ports 8002 and
// 8003) and two seed daemons on the origin host, every daemon given both
// schedulers, and two faults during the run:
//   1. once the HTTP origin has sent `schedulerAt` of the file (25%), the
//      task's scheduler (the first of the task's rendezvous order, as every
//      daemon computes it) is SIGKILLed;
//   2. once it has sent `seedAt` (50%), the seed daemon fetching the task
//      from the origin (its log says "fetching from the origin") is SIGKILLed.
// Run next to plain `damselfly` in one invocation, it shows what the two
// failovers cost in completion time and origin egress.
//
// The seeds reach the HTTP origin inside the origin host (not through a
// shaped link), so a seed's fetch runs at loopback speed and both faults
// fall in the first seconds of the run, while the swarm still holds little.
import { rendezvousOrder } from "../../src/common/rendezvous.js";
import { taskId } from "../../src/common/task-id.js";
import { pieceLengthFor } from "../../src/common/pieces.js";
import { storedPieces } from "../../test/helpers/store.js";
import type { ClusterView, RunHook } from "./damselfly-layout.js";
import { MiB } from "./damselfly-logs.js";
import { damselflyMode, type DamselflyOptions } from "./mode-damselfly.js";
import type { Mode } from "./mode.js";
import { jsonLine, killGroup, sleep, type Service } from "./proc.js";

// Fractions of the file the HTTP origin has sent when each fault fires.
export interface ChaosPoints {
  schedulerAt: number;
  seedAt: number;
}

export const CHAOS_DEFAULTS: ChaosPoints = { schedulerAt: 0.25, seedAt: 0.5 };
const SCHEDULER_PORTS = [8002, 8003];
// A seed reads the origin over the origin host's loopback at 100+ MiB/s: poll often so
// a fault fires within a few percent of its point.
const POLL_MS = 25;
// Bound on the polling loop: at least 15 minutes of polls (the run's own
// deadline ends it far sooner).
const MAX_POLLS = 36_000;

interface Kill {
  what: "scheduler" | "seed";
  process: string;
  pid: number;
  address: string;
  // File bytes the HTTP origin had sent (since the clock started) when the
  // fault was triggered, and seconds since the clock started.
  originSentBytes: number;
  atS: number;
  // Wall clock, to line up with the processes' logs.
  time: string;
  detail: Record<string, unknown>;
}

// Log lines (of any process) that show the failovers, for the run's timeline.
const TIMELINE_MSGS = new Set([
  "triggering seed peer",
  "seed trigger failed",
  "seed peer takes the task over from the peers that hold it",
  "a parent's host does not answer: removing it",
  "task failed for peer",
  "fetching from the origin",
  "task downloaded",
  "scheduler unreachable",
  "announce stream rejected",
  "download moved to another scheduler",
]);

function chaosHook(c: ClusterView, at: ChaosPoints): RunHook {
  const size = c.ctx.size;
  const id = taskId({ url: c.url });
  const order = rendezvousOrder(id, c.schedulers, (s) => s.spec.address, { rankBytes: 4 });
  const target = order[0]!;
  const kills: Kill[] = [];
  const problems: string[] = [];
  let t0 = 0;
  let wallT0 = 0;
  let stopped = false;
  let loop: Promise<void> | undefined;
  const sinceT0 = () => Math.round(performance.now() - t0) / 1000;
  const ofTask = (svc: Service, msg: string) =>
    svc.lines.filter((l) => {
      const j = jsonLine(l);
      return j?.["msg"] === msg && j["taskId"] === id;
    });

  const kill = (what: Kill["what"], svc: Service, address: string, sent: number, detail: Record<string, unknown>) => {
    killGroup(svc.child, "SIGKILL");
    kills.push({ what, process: svc.name, pid: svc.pid, address, originSentBytes: sent, atS: sinceT0(), time: new Date().toISOString(), detail });
  };

  const killScheduler = (sent: number) => {
    // The daemons' choice, checked against the schedulers' own logs: the
    // task's scheduler is the one that triggered its seed.
    const triggeredBy = c.schedulers.filter((s) => ofTask(s.svc, "triggering seed peer").length > 0).map((s) => s.spec.name);
    if (!triggeredBy.includes(target.spec.name)) {
      problems.push(
        `the scheduler computed for the task (${target.spec.name}) had not triggered its seed when killed; triggered by: ${triggeredBy.join(", ") || "none"}`,
      );
    }
    const seedHost = ofTask(target.svc, "triggering seed peer").map((l) => jsonLine(l)?.["seedHostId"])[0];
    kill("scheduler", target.svc, target.spec.address, sent, { rendezvousOrder: order.map((s) => s.spec.address), triggeredBy, seedHostTriggered: seedHost });
  };

  // True once done (killed, or nothing to kill).
  const killSeed = (sent: number): boolean => {
    const fetching = c.seeds.filter((s) => s.svc.running() && ofTask(s.svc, "fetching from the origin").length > 0);
    if (fetching.length === 0) {
      if (sent >= size) problems.push("no seed was fetching the task from the origin by the time the origin had sent the whole file");
      return sent >= size;
    }
    if (fetching.length > 1) problems.push(`${fetching.length} seeds were fetching the task from the origin; killed the first`);
    const s = fetching[0]!;
    const pieces = storedPieces(s.spec.dataDir, id).size;
    const total = Math.ceil(size / pieceLengthFor(size));
    kill("seed", s.svc, s.spec.upload, sent, { hostname: s.spec.hostname, storedPieces: pieces, totalPieces: total });
    return true;
  };

  const poll = async () => {
    let phase = 0;
    for (let i = 0; i < MAX_POLLS && !stopped && phase < 2; i++) {
      const sent = await c.originSent().catch(() => undefined);
      if (stopped) return;
      // One fault per poll: the seed dies at least a poll after the scheduler.
      if (sent === undefined) {
        // the origin did not answer in time: next poll
      } else if (phase === 0) {
        if (sent >= at.schedulerAt * size) {
          killScheduler(sent);
          phase = 1;
        }
      } else if (sent >= at.seedAt * size && killSeed(sent)) phase = 2;
      await sleep(POLL_MS);
    }
    if (phase < 2 && !stopped) problems.push(`only ${phase} of 2 faults fired`);
  };

  // Notable lines of every process, seconds since the clock started.
  const timeline = () => {
    const procs: Service[] = [...c.schedulers.map((s) => s.svc), ...c.seeds.map((s) => s.svc), ...c.daemons];
    const out: Array<{ atS: number; process: string; msg: string; fields: Record<string, unknown> }> = [];
    for (const svc of procs) {
      for (const l of svc.lines) {
        const j = jsonLine(l);
        if (!j || !TIMELINE_MSGS.has(String(j["msg"]))) continue;
        if (j["taskId"] !== undefined && j["taskId"] !== id) continue;
        const atS = Math.round(Date.parse(String(j["time"])) - wallT0) / 1000;
        if (!(atS >= 0)) continue;
        const { msg, time: _t, level: _l, pid: _p, hostname: _h, taskId: _id, ...fields } = j;
        out.push({ atS, process: svc.name, msg: String(msg), fields });
      }
    }
    return out.sort((a, b) => a.atS - b.atS);
  };

  return {
    start(t) {
      t0 = t;
      wallT0 = Date.now() - (performance.now() - t);
      loop = poll();
    },
    async stop() {
      stopped = true;
      await loop;
    },
    report() {
      const pct = (b: number) => `${Math.round((b / size) * 100)}%`;
      const notes = kills.map(
        (k) =>
          `fault: SIGKILL ${k.what} ${k.process} (pid ${k.pid}, ${k.address}) at ${k.atS.toFixed(1)} s, the origin having sent ${MiB(k.originSentBytes)} (${pct(k.originSentBytes)} of the file)` +
          (k.what === "seed" ? `; it held ${String(k.detail["storedPieces"])}/${String(k.detail["totalPieces"])} pieces` : ""),
      );
      notes.push(`task ${id.slice(0, 12)}: schedulers in rendezvous order ${order.map((s) => `${s.spec.name} (${s.spec.address})`).join(", ")}`);
      for (const p of problems) notes.push(`chaos: ${p}`);
      const tl = timeline();
      const afterFaults = tl.filter((e) => e.process.startsWith("scheduler") || e.process.startsWith("seed"));
      for (const e of afterFaults) notes.push(`  ${e.atS.toFixed(1)} s ${e.process}: ${e.msg} ${JSON.stringify(e.fields)}`);
      return { extra: { chaos: { taskId: id, points: at, schedulerOrder: order.map((s) => s.spec.address), kills, problems, timeline: tl } }, notes };
    },
  };
}

export function damselflyChaosMode(name: string, opts: DamselflyOptions = {}, at: ChaosPoints = CHAOS_DEFAULTS): Mode {
  return damselflyMode(name, undefined, { ...opts, schedulerPorts: SCHEDULER_PORTS, seeds: 2, during: (c) => chaosHook(c, at) });
}
