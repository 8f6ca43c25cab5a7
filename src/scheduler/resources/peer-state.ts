// The states of a scheduler peer and every legal change between them, in one
// table: each state change goes through peerTransition (Peer.apply), so the
// table is the whole state machine. The peer's lifecycle is described in
// docs/decisions/scheduler-peer-state.md.
//
//   pending ──started/parents──> running <──parents── backToSource
//      │                            │                   ^
//      └──────────── source ────────┴───── source ──────┘
//   any ──finished──> succeeded        any ──failed──> failed
//
// A peer may speak again after an end state (its stream is still open: a
// late reschedule or a cached-task announcement), so the end states are left
// by `source`, `finished` and `failed` as they always were; what an end state
// cannot take is `started` or `parents` (a finished or failed peer does not
// become a running one). Those are rejected: the state stays, the caller
// counts and logs it, nothing throws.

export type PeerState = "pending" | "running" | "backToSource" | "succeeded" | "failed";

// What happened to the peer, whoever said so (the peer or the scheduler).
export type PeerEvent =
  // The peer started downloading from parents (download_peer_started).
  | "started"
  // The scheduler gave the peer candidate parents (normal_task).
  | "parents"
  // The peer fetches from the origin: told so (need_back_to_source) or it
  // said so (back_to_source_started).
  | "source"
  // The peer holds the whole task: it finished, or its host announced it cached.
  | "finished"
  // The peer failed, or the scheduler failed it (task_failed).
  | "failed";

export const PEER_STATES: readonly PeerState[] = ["pending", "running", "backToSource", "succeeded", "failed"];
export const PEER_EVENTS: readonly PeerEvent[] = ["started", "parents", "source", "finished", "failed"];

// from-state x event -> to-state; null: rejected (the state stays). Static:
// a transition is two property reads, no allocation (thousands of
// registrations a second go through here).
type Row = Readonly<Record<PeerEvent, PeerState | null>>;
export const PEER_TRANSITIONS: Readonly<Record<PeerState, Row>> = Object.freeze({
  pending: row("running", "running", "backToSource", "succeeded", "failed"),
  running: row("running", "running", "backToSource", "succeeded", "failed"),
  backToSource: row("backToSource", "running", "backToSource", "succeeded", "failed"),
  succeeded: row(null, null, "backToSource", "succeeded", "failed"),
  failed: row(null, null, "backToSource", "succeeded", "failed"),
});

function row(started: PeerState | null, parents: PeerState | null, source: PeerState | null, finished: PeerState | null, failed: PeerState | null): Row {
  return Object.freeze({ started, parents, source, finished, failed });
}

// The state after `event`, or null when the table rejects it.
export function peerTransition(from: PeerState, event: PeerEvent): PeerState | null {
  return PEER_TRANSITIONS[from][event];
}

// The event that takes `from` to `to`, if any (fixtures set states by name).
export function eventTo(from: PeerState, to: PeerState): PeerEvent | undefined {
  for (const e of PEER_EVENTS) if (PEER_TRANSITIONS[from][e] === to) return e;
  return undefined;
}

// Downloading or about to: may still get parents or go to the origin.
export function isActiveState(s: PeerState): boolean {
  return s === "pending" || s === "running" || s === "backToSource";
}
