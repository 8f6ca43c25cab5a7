import { create } from "@bufbuild/protobuf";
import type { Logger } from "../common/logger.js";
import { rendezvousOrder } from "../common/rendezvous.js";
import type { SchedulerConfig } from "../common/schemas.js";
import type { Caller } from "../protocol/caller.js";
import { cacheDownload, downloadTaskId, isCacheDigestOf, isCacheDownloadOf, schedulerv1 } from "../protocol/index.js";
import { checkOwner, registrantOf } from "./access.js";
import type { DaemonClients } from "./daemon-clients.js";
import { preheatHost } from "./preheat.js";
import type { Host } from "./resources/host-manager.js";
import type { GrantFn } from "./scheduling/engine.js";
import type { ResourceStore } from "./resources/resource-store.js";
import { checkId, invalid } from "./validate.js";

const MAX_REPLICAS = 16;
const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const MAX_TIMEOUT_MS = 24 * 3_600_000;
const MAX_TTL_MS = 366n * 24n * 3_600_000n;

export interface ReplicatorDeps {
  config: SchedulerConfig;
  logger: Logger;
  store: ResourceStore;
  clients: DaemonClients;
  now: () => number;
  // With TLS: signs an importer's grant.
  grant?: GrantFn | undefined;
}

// ReplicateTask: copies of an imported task (no origin) on hosts other than
// its writer's, so it outlives the writer. The hosts are the live ones whose
// daemon API this scheduler can call, seed peers first, each group in the
// task's rendezvous order (every scheduler picks the same ones). Each is
// asked for the task as a preheat is (DownloadTask with store-path
// delivery): it takes it from the swarm, checks it against its digest, and
// the call answers once it holds it. A caller can name only an imported
// task's download (never a URL a host would fetch), for a host it owns.
export class Replicator {
  constructor(private readonly deps: ReplicatorDeps) {}

  targets(taskId: string, exclude: string): Host[] {
    const { store, config } = this.deps;
    const hosts = store.hosts.liveDaemons(this.deps.now(), config.hostTimeout).filter((h) => h.id !== exclude);
    const ordered = rendezvousOrder(taskId, hosts, (h) => h.id, { separator: "\0" });
    return [...ordered.filter((h) => h.isSeed), ...ordered.filter((h) => !h.isSeed)];
  }

  async replicate(req: schedulerv1.ReplicateTaskRequest, caller: Caller): Promise<schedulerv1.ReplicateTaskResponse> {
    const r = registrantOf(caller, "ReplicateTask");
    checkId("host_id", req.hostId);
    const host = this.deps.store.hosts.get(req.hostId);
    if (!host) throw invalid(`host ${req.hostId} not announced`);
    checkOwner(r, host);
    if (!req.download) throw invalid("download is required");
    const taskId = downloadTaskId(req.download);
    if (!isCacheDownloadOf(req.download, taskId)) throw invalid("ReplicateTask takes only an imported task's download (damselfly-cache URL, digest-keyed)");
    if (req.replicas > MAX_REPLICAS) throw invalid(`replicas ${req.replicas} is above the bound (${MAX_REPLICAS})`);
    if (req.taskTtlMs > MAX_TTL_MS) throw invalid(`task_ttl_ms is above the bound (${MAX_TTL_MS})`);
    const all = this.targets(taskId, host.id);
    const chosen = all.slice(0, req.replicas);
    const timeoutMs = req.timeoutMs > 0n ? Math.min(Number(req.timeoutMs), MAX_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
    // Rebuilt: no header or other field of the caller's travels on.
    const download = cacheDownload(req.download.digest);
    const results = await Promise.all(chosen.map((h) => preheatHost(this.deps.clients, h, download, timeoutMs, req.taskTtlMs)));
    this.deps.logger.info(
      { taskId, hostId: host.id, wanted: req.replicas, candidates: all.length, placed: results.filter((x) => x.success).length },
      "replicas placed",
    );
    return create(schedulerv1.ReplicateTaskResponseSchema, { taskId, results, candidates: all.length });
  }

  // GrantImport: the importer signs its task's geometry and pieces under
  // this grant, as a peer sent to the origin does. Only for an imported
  // task's ID and its digest, to the certificate that owns the host; the
  // whole content is still checked against the digest by every reader, so a
  // grant lets a holder sign nothing a reader would finally accept but the
  // content the ID names.
  grantImport(req: schedulerv1.GrantImportRequest, caller: Caller): schedulerv1.GrantImportResponse {
    const r = registrantOf(caller, "GrantImport");
    checkId("host_id", req.hostId);
    checkId("peer_id", req.peerId);
    const host = this.deps.store.hosts.get(req.hostId);
    if (!host) throw invalid(`host ${req.hostId} not announced`);
    checkOwner(r, host);
    if (!isCacheDigestOf(req.taskId, req.digest)) throw invalid("GrantImport takes only an imported task's ID and the digest it is made of");
    const fingerprint = r.identity?.fingerprint;
    if (!fingerprint || !this.deps.grant) return create(schedulerv1.GrantImportResponseSchema, {});
    this.deps.logger.info({ taskId: req.taskId, hostId: host.id, peerId: req.peerId }, "import granted");
    return create(schedulerv1.GrantImportResponseSchema, { grant: this.deps.grant(req.taskId, req.peerId, fingerprint) });
  }
}
