import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createRpcTransport, daemonv1, type Download } from "../../protocol/index.js";
import type { Host } from "../resources/host-manager.js";

// Rendezvous (highest random weight) hashing: every scheduler picks the same
// seed for a task, and only tasks of a departed seed move elsewhere.
export function pickSeedHost(taskId: string, seeds: readonly Host[]): Host | undefined {
  let best: Host | undefined;
  let bestWeight = "";
  for (const h of seeds) {
    const w = createHash("sha256").update(taskId).update("\0").update(h.id).digest("hex");
    if (best === undefined || w > bestWeight) {
      best = h;
      bestWeight = w;
    }
  }
  return best;
}

export type TriggerFn = (host: Host, download: Download, taskId: string) => Promise<void>;

// Calls TriggerTask on a seed daemon's API. One client per daemon address.
export class SeedTriggerClient {
  private readonly clients = new Map<string, Client<typeof daemonv1.DaemonService>>();

  constructor(private readonly timeoutMs = 10_000) {}

  readonly trigger: TriggerFn = async (host, download, taskId) => {
    const base = `http://${host.ip.includes(":") ? `[${host.ip}]` : host.ip}:${host.apiPort}`;
    let client = this.clients.get(base);
    if (!client) {
      client = createClient(daemonv1.DaemonService, createRpcTransport(base));
      this.clients.set(base, client);
    }
    await client.triggerTask(create(daemonv1.TriggerTaskRequestSchema, { download, taskId }), { timeoutMs: this.timeoutMs });
  };

  forget(host: Host): void {
    this.clients.delete(`http://${host.ip.includes(":") ? `[${host.ip}]` : host.ip}:${host.apiPort}`);
  }
}
