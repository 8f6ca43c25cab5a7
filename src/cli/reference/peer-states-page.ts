// docs/reference/peer-states.md: a scheduler peer's state machine, drawn from
// the transition table itself (src/scheduler/resources/peer-state.ts).
import { PEER_EVENTS, PEER_STATES, PEER_TRANSITIONS } from "../../scheduler/resources/peer-state.js";
import { code, generatedHeader, table } from "./markdown.js";

export function peerStatesPage(): string {
  const edges = new Map<string, string[]>();
  for (const from of PEER_STATES) {
    for (const event of PEER_EVENTS) {
      const to = PEER_TRANSITIONS[from][event];
      // Staying put is in the table below; the diagram shows changes.
      if (to === null || to === from) continue;
      const k = `${from} --> ${to}`;
      edges.set(k, [...(edges.get(k) ?? []), event]);
    }
  }
  const diagram = ["```mermaid", "stateDiagram-v2", "  [*] --> pending: register", ...[...edges].map(([k, events]) => `  ${k}: ${events.join(", ")}`), "```"];
  const rows = PEER_STATES.map((from) => [code(from), ...PEER_EVENTS.map((e) => PEER_TRANSITIONS[from][e] ?? "rejected")]);
  return [
    generatedHeader("Scheduler peer states", ["src/scheduler/resources/peer-state.ts"]),
    "Every state change of a scheduler peer goes through this table. What the states mean and when each event",
    "happens: [architecture/scheduler-peer-states.md](../architecture/scheduler-peer-states.md); why the end states",
    "are not final: [decisions/scheduler-peer-state.md](../decisions/scheduler-peer-state.md).",
    "",
    ...diagram,
    "",
    table(["from \\ event", ...PEER_EVENTS], rows),
    "",
  ].join("\n");
}
