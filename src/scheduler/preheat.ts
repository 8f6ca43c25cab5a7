import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { SchedulerConfig } from "../common/schemas.js";
import { daemonv1, downloadTaskId, fromConnectError, schedulerv1, type Download } from "../protocol/index.js";
import type { DaemonClients } from "./daemon-clients.js";
import type { Host } from "./resources/host-manager.js";
import type { ResourceStore } from "./resources/resource-store.js";
import { pickSeedHost } from "./scheduling/seed-trigger.js";

const DEFAULT_TIMEOUT_MS = 30 * 60_000;

export interface PreheatDeps {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  clients: DaemonClients;
  now: () => number;
}

// A preheat asks each chosen host's daemon API for the task with store-path
// delivery: the daemon downloads it through the swarm like any other
// download (a seed peer from the origin when cold) and answers when the task
// is complete and verified, without sending its bytes back. Marked
// background: under a download limit the daemon's real-time pulls go first.
export class Preheater {
  constructor(private readonly deps: PreheatDeps) {}

  targets(taskId: string, scope: schedulerv1.PreheatScope): Host[] {
    const { store, config } = this.deps;
    const now = this.deps.now();
    const seeds = store.hosts.liveSeeds(now, config.hostTimeout);
    switch (scope) {
      case schedulerv1.PreheatScope.ALL_SEED_PEERS:
        return seeds;
      case schedulerv1.PreheatScope.ALL_PEERS:
        return store.hosts.liveDaemons(now, config.hostTimeout);
      default: {
        const seed = pickSeedHost(taskId, seeds);
        return seed ? [seed] : [];
      }
    }
  }

  async preheat(req: schedulerv1.PreheatTaskRequest): Promise<schedulerv1.PreheatTaskResponse> {
    const download = req.download;
    if (!download) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "download is required");
    const taskId = downloadTaskId(download);
    const hosts = this.targets(taskId, req.scope);
    if (hosts.length === 0) {
      const what = req.scope === schedulerv1.PreheatScope.ALL_PEERS ? "live host" : "live seed peer";
      throw new DamselflyError("DF_ERR_NO_PARENT", `no ${what} in this cluster to preheat into`);
    }
    const timeoutMs = req.timeoutMs > 0n ? Number(req.timeoutMs) : DEFAULT_TIMEOUT_MS;
    const started = Date.now();
    const results = await Promise.all(hosts.map((h) => preheatHost(this.deps.clients, h, download, timeoutMs)));
    this.deps.logger.info({ taskId, hosts: hosts.length, failed: results.filter((r) => !r.success).length, ms: Date.now() - started }, "preheat done");
    return create(schedulerv1.PreheatTaskResponseSchema, { taskId, results });
  }
}

// One host's daemon fetches the task through the swarm (store-path delivery,
// in the background) and answers once it holds it complete and verified.
// Preheats and imported-task replicas (replicas.ts) both place copies so;
// `taskTtlMs` (0: the daemon's own TTL) is a replica's.
export async function preheatHost(
  clients: DaemonClients,
  host: Host,
  download: Download,
  timeoutMs: number,
  taskTtlMs = 0n,
): Promise<schedulerv1.PreheatHostResult> {
  const base = { hostId: host.id, hostname: host.hostname, ip: host.ip };
  try {
    const req = create(daemonv1.DownloadTaskRequestSchema, {
      download,
      delivery: daemonv1.Delivery.STORE_PATH,
      timeoutMs: BigInt(timeoutMs),
      background: true,
      taskTtlMs,
    });
    let finished = false;
    for await (const ev of clients.get(host).downloadTask(req, { timeoutMs: timeoutMs + 5_000 })) {
      if (ev.event.case === "finished") finished = true;
    }
    if (!finished) throw new DamselflyError("DF_ERR_INTERNAL", "the daemon ended the download without finishing it");
    return create(schedulerv1.PreheatHostResultSchema, { ...base, success: true });
  } catch (err) {
    const e = fromConnectError(err);
    return create(schedulerv1.PreheatHostResultSchema, { ...base, success: false, description: `${e.code}: ${e.message}` });
  }
}
