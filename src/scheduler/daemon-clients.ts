import { createClient, type Client } from "@connectrpc/connect";
import type { TlsIdentity } from "../common/tls/identity.js";
import type { Role } from "../common/tls/roles.js";
import { createRpcTransport, daemonv1 } from "../protocol/index.js";
import type { Host } from "./resources/host-manager.js";

type DaemonClient = Client<typeof daemonv1.DaemonService>;

// What the scheduler asks of a daemon, and so which certificate the daemon
// must show: a seed trigger carries the requester's credentials (its
// Authorization header) and goes only to a seed-peer; preheats and task jobs
// go to a peer or a seed-peer.
export type DaemonPurpose = "trigger" | "job";

const ROLES: Record<DaemonPurpose, readonly Role[]> = { trigger: ["seed-peer"], job: ["peer", "seed-peer"] };

// One DaemonService client (one HTTP/2 session) per daemon API address and
// purpose, for all of the scheduler's calls to daemons: seed triggers,
// preheats, task jobs. One pool per scheduler; a host's clients are dropped
// when the host leaves or times out (Scheduler hooks forget into HostManager
// removals). With TLS every call is mutual TLS (https) to a daemon whose
// certificate has the purpose's role; the address is the one the host
// announced from (access.ts), so its certificate is checked by role, not by
// name.
export class DaemonClients {
  private readonly clients = new Map<string, DaemonClient>();

  constructor(private readonly tls?: TlsIdentity) {}

  get(host: Host, purpose: DaemonPurpose = "job"): DaemonClient {
    const base = apiBase(host, this.tls !== undefined);
    const key = `${purpose} ${base}`;
    let c = this.clients.get(key);
    if (!c) {
      const tls = this.tls ? { identity: this.tls, server: { roles: ROLES[purpose], verifyHostname: false } } : undefined;
      c = createClient(daemonv1.DaemonService, createRpcTransport(base, tls));
      this.clients.set(key, c);
    }
    return c;
  }

  forget(host: Host): void {
    const base = apiBase(host, this.tls !== undefined);
    for (const purpose of Object.keys(ROLES)) this.clients.delete(`${purpose} ${base}`);
  }

  get size(): number {
    return this.clients.size;
  }
}

function apiBase(host: Host, tls: boolean): string {
  return `${tls ? "https" : "http"}://${host.ip.includes(":") ? `[${host.ip}]` : host.ip}:${host.apiPort}`;
}
