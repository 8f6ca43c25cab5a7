import { createClient, type Client } from "@connectrpc/connect";
import { createRpcTransport, daemonv1 } from "../protocol/index.js";
import type { Host } from "./resources/host-manager.js";

// One DaemonService client (one HTTP/2 session) per daemon API address, for
// all of the scheduler's calls to daemons: seed triggers, preheats, task
// jobs. One pool per scheduler; a host's client is dropped when the host
// leaves or times out (Scheduler hooks forget into HostManager removals).
export class DaemonClients {
  private readonly clients = new Map<string, Client<typeof daemonv1.DaemonService>>();

  get(host: Host): Client<typeof daemonv1.DaemonService> {
    const base = apiBase(host);
    let c = this.clients.get(base);
    if (!c) {
      c = createClient(daemonv1.DaemonService, createRpcTransport(base));
      this.clients.set(base, c);
    }
    return c;
  }

  forget(host: Host): void {
    this.clients.delete(apiBase(host));
  }

  get size(): number {
    return this.clients.size;
  }
}

function apiBase(host: Host): string {
  return `http://${host.ip.includes(":") ? `[${host.ip}]` : host.ip}:${host.apiPort}`;
}
