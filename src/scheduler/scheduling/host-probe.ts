import net from "node:net";
import type { Logger } from "../../common/logger.js";
import type { Host } from "../resources/host-manager.js";

// True when the host's daemon still answers.
export type ProbeFn = (host: Host) => Promise<boolean>;

const PROBE_TIMEOUT_MS = 1_000;
// A host is probed at most once per this gap, however many children
// report it (and once more at its end when reports kept coming).
const MIN_GAP_MS = 500;

// A TCP connection to the host's upload port (its data plane, on every
// daemon and reachable from the scheduler as from its children): refused or
// silent within the timeout means the daemon is gone. A connection, not a
// request: with TLS the handshake would need no more than this to prove a
// listener.
export const connectProbe: ProbeFn = (host) =>
  new Promise<boolean>((resolve) => {
    if (host.ip === "" || host.uploadPort === 0) return resolve(true);
    const sock = net.connect({ host: host.ip, port: host.uploadPort });
    const done = (alive: boolean) => {
      sock.destroy();
      resolve(alive);
    };
    sock.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });

// Children tell the scheduler a parent failed them; the scheduler does not
// take their word for it (a child may lie), but checks the parent's host
// itself. A dead one is removed at once instead of after its keep-alive
// timeout: its children get other parents, and a task it was fetching gets
// the next seed peer of its ring (docs/decisions/scheduler-failover.md).
interface ProbeState {
  inFlight: boolean;
  // When the last probe ended.
  at: number;
  // A suspicion came while a probe ran or within the gap after it: probe
  // once more when the gap ends (a daemon being killed may still accept a
  // connection for a moment after its streams broke).
  again: NodeJS.Timeout | undefined;
  // Probes still to make after a live answer, one per gap.
  rechecks: number;
}

export class HostProbes {
  private readonly states = new Map<string, ProbeState>();

  constructor(
    private readonly o: {
      probe: ProbeFn;
      now: () => number;
      log: Logger;
      // The host (still this object) is gone: remove it with its peers.
      dead: (host: Host) => void;
      lookup: (hostId: string) => Host | undefined;
    },
  ) {}

  // `rechecks`: probe that many more times, a gap apart, while it answers
  // (the evidence was strong: its stream vanished, a call to it failed).
  suspect(hostId: string, rechecks = 0): void {
    const host = this.o.lookup(hostId);
    if (!host) return;
    let st = this.states.get(hostId);
    if (!st) {
      // Bounded: a host's state lives while a probe of it runs or waits.
      if (this.states.size >= 10_000) return;
      this.states.set(hostId, (st = { inFlight: false, at: -Infinity, again: undefined, rechecks: 0 }));
    }
    st.rechecks = Math.max(st.rechecks, rechecks);
    const wait = st.at + MIN_GAP_MS - this.o.now();
    if (st.inFlight || wait > 0) {
      st.again ??= setTimeout(() => this.probeAgain(hostId), st.inFlight ? MIN_GAP_MS : wait).unref();
      return;
    }
    this.run(hostId, host, st);
  }

  private probeAgain(hostId: string): void {
    const st = this.states.get(hostId);
    if (!st) return;
    st.again = undefined;
    st.at = -Infinity;
    this.suspect(hostId);
  }

  private run(hostId: string, host: Host, st: ProbeState): void {
    st.inFlight = true;
    void this.o.probe(host).then((alive) => {
      st.inFlight = false;
      st.at = this.o.now();
      if (alive && st.rechecks > 0 && !st.again) {
        st.rechecks--;
        st.again = setTimeout(() => this.probeAgain(hostId), MIN_GAP_MS);
        st.again.unref();
      }
      if (!st.again) this.forgetLater(hostId, st);
      if (alive || this.o.lookup(hostId) !== host) return;
      if (st.again) clearTimeout(st.again);
      this.states.delete(hostId);
      this.o.log.warn({ hostId, ip: host.ip, uploadPort: host.uploadPort, seed: host.isSeed }, "a parent's host does not answer: removing it");
      this.o.dead(host);
    });
  }

  // The state is kept for the gap only (the map stays small).
  private forgetLater(hostId: string, st: ProbeState): void {
    setTimeout(() => {
      if (this.states.get(hostId) === st && !st.inFlight && !st.again) this.states.delete(hostId);
    }, MIN_GAP_MS).unref();
  }
}
