import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../common/errors.js";
import { managerv1 } from "../protocol/index.js";
import { DAEMON_CLUSTER_KEYS, pickSet, SCHEDULER_CLUSTER_KEYS, type ClusterConfig } from "../common/cluster-config.js";
import type { Database } from "./db/database.js";
import type { SchedulerRow } from "./db/tables.js";

export type { ClusterConfig };

export interface LiveHost {
  id: string;
  hostname: string;
  ip: string;
  seed: boolean;
  uploadPort: number;
  apiPort: number;
  uploadBytesTotal: number;
  concurrentUploads: number;
  schedulerId: number;
}

// Schedulers are rows (they survive a manager restart and are listed as
// inactive once silent); the hosts each scheduler reports are live state and
// kept in memory only.
export class ClusterRegistry {
  private readonly hostsByScheduler = new Map<number, { at: number; hosts: LiveHost[] }>();

  constructor(
    private readonly database: Database,
    private readonly schedulerTimeoutMs: number,
  ) {}

  async keepAlive(req: managerv1.KeepAliveSchedulerRequest): Promise<managerv1.KeepAliveSchedulerResponse> {
    const { db } = this.database;
    const clusterId = Number(req.clusterId);
    if (!Number.isSafeInteger(clusterId) || clusterId < 1) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "cluster_id must be >= 1");
    if (req.ip === "" || req.port === 0 || req.port > 65535) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "ip and port are required");
    if (req.hostname.length > 255 || req.ip.length > 64) throw new DamselflyError("DF_ERR_INVALID_REQUEST", "hostname or ip too long");
    const cluster = await db.selectFrom("scheduler_clusters").select(["id", "config"]).where("id", "=", clusterId).executeTakeFirst();
    if (!cluster) throw new DamselflyError("DF_ERR_NOT_FOUND", `scheduler cluster ${clusterId} does not exist`);
    const t = new Date().toISOString();
    const existing = await db.selectFrom("schedulers").select("id").where("ip", "=", req.ip).where("port", "=", req.port).executeTakeFirst();
    let id: number;
    if (existing) {
      id = existing.id;
      await db.updateTable("schedulers").set({ cluster_id: clusterId, hostname: req.hostname, last_seen_at: t, updated_at: t }).where("id", "=", id).execute();
    } else {
      const r = await db
        .insertInto("schedulers")
        .values({ cluster_id: clusterId, hostname: req.hostname, ip: req.ip, port: req.port, last_seen_at: t, created_at: t, updated_at: t })
        .returning("id")
        .executeTakeFirstOrThrow();
      id = r.id;
    }
    this.hostsByScheduler.set(id, {
      at: Date.now(),
      hosts: req.hosts.slice(0, 100_000).map((h) => ({
        id: h.id,
        hostname: h.hostname,
        ip: h.ip,
        seed: h.seed,
        uploadPort: h.uploadPort,
        apiPort: h.apiPort,
        uploadBytesTotal: Number(h.uploadBytesTotal),
        concurrentUploads: h.concurrentUploads,
        schedulerId: id,
      })),
    });
    const cfg = JSON.parse(cluster.config) as ClusterConfig;
    return create(managerv1.KeepAliveSchedulerResponseSchema, { schedulerId: BigInt(id), config: pickSet(cfg, SCHEDULER_CLUSTER_KEYS) });
  }

  async leave(ip: string, port: number): Promise<void> {
    const row = await this.database.db.selectFrom("schedulers").select("id").where("ip", "=", ip).where("port", "=", port).executeTakeFirst();
    if (!row) return;
    await this.database.db
      .updateTable("schedulers")
      .set({ last_seen_at: new Date(0).toISOString(), updated_at: new Date().toISOString() })
      .where("id", "=", row.id)
      .execute();
    this.hostsByScheduler.delete(row.id);
  }

  isActive(row: Pick<SchedulerRow, "last_seen_at">): boolean {
    return Date.now() - Date.parse(row.last_seen_at) < this.schedulerTimeoutMs;
  }

  // Active schedulers, of the given clusters or of all.
  // The daemon settings of a cluster's dynamic config; undefined for an
  // unknown cluster.
  async daemonConfig(clusterId: number): Promise<managerv1.DaemonClusterConfig | undefined> {
    const cluster = await this.database.db.selectFrom("scheduler_clusters").select(["config"]).where("id", "=", clusterId).executeTakeFirst();
    if (!cluster) return undefined;
    const cfg = JSON.parse(cluster.config) as ClusterConfig;
    const out = create(managerv1.DaemonClusterConfigSchema);
    for (const k of DAEMON_CLUSTER_KEYS) if (typeof cfg[k] === "number") out[k] = BigInt(cfg[k]);
    return out;
  }

  async activeSchedulers(clusterIds?: readonly number[]): Promise<SchedulerRow[]> {
    let q = this.database.db
      .selectFrom("schedulers")
      .selectAll()
      .where("last_seen_at", ">", new Date(Date.now() - this.schedulerTimeoutMs).toISOString());
    if (clusterIds && clusterIds.length > 0) q = q.where("cluster_id", "in", [...clusterIds]);
    return q.orderBy("id").execute();
  }

  // The hosts the cluster's active schedulers reported, one entry per host.
  async hosts(clusterId: number): Promise<LiveHost[]> {
    const byId = new Map<string, LiveHost>();
    for (const s of await this.activeSchedulers([clusterId])) {
      for (const h of this.hostsByScheduler.get(s.id)?.hosts ?? []) byId.set(h.id, h);
    }
    return [...byId.values()].sort((a, b) => Number(b.seed) - Number(a.seed) || a.hostname.localeCompare(b.hostname));
  }
}
