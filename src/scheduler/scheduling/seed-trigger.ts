import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { daemonv1, type Download } from "../../protocol/index.js";
import { DaemonClients } from "../daemon-clients.js";
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

// headers: the W3C trace context of the registration that caused it.
export type TriggerFn = (host: Host, download: Download, taskId: string, headers?: Record<string, string>) => Promise<void>;

// Calls TriggerTask on a seed daemon's API. One client per daemon address.
export class SeedTriggerClient {
  private readonly clients = new DaemonClients();

  constructor(private readonly timeoutMs = 10_000) {}

  readonly trigger: TriggerFn = async (host, download, taskId, headers) => {
    await this.clients.get(host).triggerTask(create(daemonv1.TriggerTaskRequestSchema, { download, taskId }), { timeoutMs: this.timeoutMs, ...(headers ? { headers } : {}) });
  };

  forget(host: Host): void {
    this.clients.forget(host);
  }
}
