// What the Damselfly modes read back from their processes' JSON logs: where
// each daemon's bytes came from and its notable events, and the scheduler's
// decisions.
import { jsonLine, type Service } from "./proc.js";

export const SUMMARY_RE = /damselfly get: .*; from peers ([^,]+), from origin ([^,]+), local ([^;]+);.*$/m;

export interface DaemonStats {
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
  "no scheduler holds the download; continuing with current parents",
  "download moved to another scheduler",
  "task download failed",
  "scheduler unreachable",
  "scheduler unreachable: downloading directly from the origin",
]);

export function daemonStats(svc: Service): DaemonStats {
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
export function schedulerStats(svc: Service): Record<string, unknown> {
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

export const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
