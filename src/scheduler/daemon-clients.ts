import { createClient, type Client } from "@connectrpc/connect";
import { createRpcTransport, daemonv1 } from "../protocol/index.js";
import type { Host } from "./resources/host-manager.js";

// One DaemonService client (one HTTP/2 session) per daemon API address, for
// the scheduler's calls to daemons: seed triggers, preheats, task jobs.
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
}

function apiBase(host: Host): string {
  return `http://${host.ip.includes(":") ? `[${host.ip}]` : host.ip}:${host.apiPort}`;
}
