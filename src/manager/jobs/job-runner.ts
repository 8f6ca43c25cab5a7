import { createClient, type Client } from "@connectrpc/connect";
import type { Dispatcher } from "undici";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import { blobDownload, clusterTokenHeaders, createRpcTransport, fromConnectError, schedulerv1, type Download } from "../../protocol/index.js";
import type { ClusterRegistry } from "../cluster-registry.js";
import type { Database } from "../db/database.js";
import type { Job } from "../db/tables.js";
import { resolveImage } from "./image-resolver.js";
import { isObjectUrl, resolveObjects, schedulersFor, type LazyPreheatDownload, type ObjectSources, type PreheatDownload } from "./object-resolver.js";
import { registryDispatcher } from "./registry-client.js";
import { fileDownload, jobTimeoutMs, REDACTED, type ClusterResult, type JobArgs, type JobResult, type JobType, type SchedulerAddr } from "./job-types.js";
import { runTaskJob } from "./task-job.js";

type PreheatItem = PreheatDownload | LazyPreheatDownload;

const SCOPES = {
  single_seed_peer: schedulerv1.PreheatScope.SINGLE_SEED_PEER,
  all_seed_peers: schedulerv1.PreheatScope.ALL_SEED_PEERS,
  all_peers: schedulerv1.PreheatScope.ALL_PEERS,
} as const;

// Runs preheat jobs: the job's row is written first (PENDING) and updated
// when it ends (SUCCESS or FAILURE, Harbor's states), so jobs outlive the
// request and a restart. Each job asks one active scheduler per cluster to
// preheat each task (manager -> scheduler PreheatTask -> daemon API of the
// seed peers). Request headers may hold registry credentials, and hf_token a
// hub token: they live in this process only and never reach the database or
// the log.
export class JobRunner {
  private readonly running = new Map<number, AbortController>();
  private readonly clients = new Map<string, Client<typeof schedulerv1.SchedulerService>>();
  private readonly done = new Set<Promise<void>>();
  private closing = false;
  private readonly types = new Map<number, JobType>();
  // Manifest and token requests of image preheats (egress-checked, bounded).
  private readonly registries = registryDispatcher();
  // Told of every job created (PENDING) and finished (SUCCESS, FAILURE).
  onState: ((type: JobType, state: "PENDING" | "SUCCESS" | "FAILURE") => void) | undefined;

  constructor(
    private readonly database: Database,
    private readonly registry: ClusterRegistry,
    private readonly logger: Logger,
    private readonly defaultTimeoutMs: number,
    private readonly clusterToken?: string,
    // With TLS, schedulers are dialled over mutual TLS and must show a
    // scheduler certificate: a job's registry credentials never go to an
    // address that merely registered itself.
    private readonly tls?: TlsIdentity,
    // Endpoints of s3:// and hf:// preheats (the manager's source.* config).
    private readonly sources: ObjectSources = { s3: { endpoint: "", region: "", pathStyle: false }, hfEndpoint: "" },
  ) {}

  async create(userId: number, type: JobType, args: JobArgs, clusterIds: number[]): Promise<Job> {
    const { headers, hf_token, ...stored } = args;
    const t = new Date().toISOString();
    const job = await this.database.db
      .insertInto("jobs")
      .values({
        type,
        state: "PENDING",
        // Whether credentials came with it: a job resumed after a restart
        // without them would fail in a confusing way.
        args: JSON.stringify({
          ...stored,
          ...(hf_token ? { hf_token: REDACTED } : {}),
          has_headers: headers !== undefined && Object.keys(headers).length > 0,
        }),
        scheduler_cluster_ids: JSON.stringify(clusterIds),
        result: "{}",
        error: "",
        user_id: userId,
        created_at: t,
        updated_at: t,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    this.onState?.(type, "PENDING");
    this.start(job.id, type, args, clusterIds);
    return job;
  }

  // Jobs a previous manager process left PENDING.
  async resume(): Promise<void> {
    const jobs = await this.database.db.selectFrom("jobs").selectAll().where("state", "=", "PENDING").execute();
    for (const j of jobs) {
      this.types.set(j.id, j.type as JobType);
      let args: JobArgs & { has_headers?: boolean };
      let clusterIds: number[];
      try {
        args = JSON.parse(j.args) as JobArgs & { has_headers?: boolean };
        clusterIds = JSON.parse(j.scheduler_cluster_ids) as number[];
      } catch {
        await this.fail(j.id, "the job's stored arguments cannot be read: submit it again");
        continue;
      }
      if (args.has_headers || args.hf_token) {
        await this.fail(j.id, "the manager restarted; the job's credentials are never stored: submit it again", "manager restarted");
        continue;
      }
      this.logger.info({ jobId: j.id, type: j.type }, "resuming job");
      this.start(j.id, j.type as JobType, args, clusterIds);
    }
  }

  // Jobs stopped by a shutdown stay PENDING: the next start runs them again.
  async close(): Promise<void> {
    this.closing = true;
    for (const ac of this.running.values()) ac.abort();
    await Promise.allSettled([...this.done]);
    await this.registries.close();
  }

  private start(id: number, type: JobType, args: JobArgs, clusterIds: number[]): void {
    const ac = new AbortController();
    this.running.set(id, ac);
    this.types.set(id, type);
    const work =
      type === "preheat"
        ? this.run(id, args, clusterIds, ac.signal)
        : runTaskJob(type, args, {
            clusters: () => this.targetClusters(clusterIds),
            client: (s) => this.client(s),
            headers: clusterTokenHeaders(this.clusterToken),
            signal: ac.signal,
            timeoutMs: jobTimeoutMs({}, this.defaultTimeoutMs),
          }).then(({ state, result, error }) => this.finish(id, state, result, error));
    // A job that throws ends in FAILURE with the reason: left PENDING it
    // would run (and throw) again at every start. A shutdown leaves it
    // PENDING on purpose (finish does nothing while closing).
    const p = work
      .catch(async (err: unknown) => {
        const e = DamselflyError.from(err);
        this.logger.error({ jobId: id, type, err: e.message }, "job crashed");
        await this.fail(id, `${e.code}: ${e.message}`);
      })
      .finally(() => {
        this.running.delete(id);
        this.types.delete(id);
        this.done.delete(p);
      });
    this.done.add(p);
  }

  private async run(id: number, args: JobArgs, clusterIds: number[], signal: AbortSignal): Promise<void> {
    const started = Date.now();
    const timeoutMs = jobTimeoutMs(args, this.defaultTimeoutMs);
    const jobSignal = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
    let downloads: PreheatItem[];
    try {
      downloads = await this.downloads(args, jobSignal);
    } catch (err) {
      const e = DamselflyError.from(err);
      await this.fail(id, `${e.code}: ${e.message}`);
      return;
    }
    const clusters = await this.targetClusters(clusterIds);
    if (clusters.length === 0) {
      await this.fail(id, "no active scheduler in the job's clusters");
      return;
    }
    const scope = SCOPES[args.scope ?? "single_seed_peer"];
    const results = await Promise.all(clusters.map((c) => this.preheatCluster(c, downloads, scope, args.concurrent_count || 4, timeoutMs, jobSignal)));
    const failed = results.reduce((n, r) => n + r.failure_tasks.length, 0);
    const error = failed > 0 ? `${failed} task(s) failed` : "";
    await this.finish(id, failed > 0 ? "FAILURE" : "SUCCESS", { job_states: [{ error, results }] }, error);
    this.logger.info({ jobId: id, tasks: downloads.length, clusters: clusters.length, failed, ms: Date.now() - started }, "preheat job finished");
  }

  private async downloads(args: JobArgs, signal: AbortSignal): Promise<PreheatItem[]> {
    const headers = args.headers ?? {};
    const url = args.url ?? "";
    if (isObjectUrl(url)) return resolveObjects(args, this.sources, this.registries);
    if (args.type === "file") return [{ url, download: fileDownload(args, headers) }];
    const image = await resolveImage(url, headers, args.platform || "linux/amd64", { signal, dispatcher: this.registries });
    // The registry mirror describes blobs the same way: same task IDs.
    return image.blobs.map((b) => ({ url: b.url, download: blobDownload({ url: b.url, headers: image.headers, digest: b.digest }) }));
  }

  // The schedulers and registry connections jobs use, for the extender's
  // locality refresh (extender/scheduler-locality.ts).
  schedulerAccess(): {
    clusters: () => Promise<{ id: number; schedulers: SchedulerAddr[] }[]>;
    client: (s: SchedulerAddr) => Client<typeof schedulerv1.SchedulerService>;
    headers: Record<string, string>;
    registries: Dispatcher;
  } {
    return {
      clusters: () => this.targetClusters([]),
      client: (s) => this.client(s),
      headers: clusterTokenHeaders(this.clusterToken),
      registries: this.registries,
    };
  }

  private async targetClusters(ids: number[]): Promise<{ id: number; schedulers: { ip: string; port: number }[] }[]> {
    const active = await this.registry.activeSchedulers(ids.length > 0 ? ids : undefined);
    const by = new Map<number, { ip: string; port: number }[]>();
    for (const s of active) by.set(s.cluster_id, [...(by.get(s.cluster_id) ?? []), { ip: s.ip, port: s.port }]);
    return [...by.entries()].map(([id, schedulers]) => ({ id, schedulers }));
  }

  private async preheatCluster(
    cluster: { id: number; schedulers: { ip: string; port: number }[] },
    downloads: PreheatItem[],
    scope: schedulerv1.PreheatScope,
    concurrency: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<ClusterResult> {
    const out: ClusterResult = { scheduler_cluster_id: cluster.id, success_tasks: [], failure_tasks: [] };
    let next = 0;
    const worker = async () => {
      while (next < downloads.length) {
        const item = downloads[next++]!;
        let d: PreheatDownload;
        try {
          d = "resolve" in item ? await item.resolve() : item;
        } catch (err) {
          const e = DamselflyError.from(err);
          out.failure_tasks.push({ url: item.url, hostname: "", ip: "", description: `${e.code}: ${e.message}` });
          continue;
        }
        const schedulers = schedulersFor(cluster.schedulers, d, this.tls !== undefined);
        const res =
          schedulers.length > 0
            ? await this.preheatOne(schedulers, d.download, scope, timeoutMs, signal)
            : {
                error: "DF_ERR_SOURCE_AUTH: the file needs the job's hub token, which is sent to schedulers over mutual TLS only (the manager has no --tls-*)",
              };
        if ("error" in res) {
          out.failure_tasks.push({ url: d.url, hostname: "", ip: "", description: res.error });
          continue;
        }
        for (const h of res.results) {
          if (h.success) out.success_tasks.push({ url: d.url, hostname: h.hostname, ip: h.ip });
          else out.failure_tasks.push({ url: d.url, hostname: h.hostname, ip: h.ip, description: h.description });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(Math.max(1, concurrency), 16, downloads.length) }, worker));
    return out;
  }

  // Tries the cluster's schedulers in turn until one answers.
  private async preheatOne(
    schedulers: { ip: string; port: number }[],
    download: Download,
    scope: schedulerv1.PreheatScope,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<schedulerv1.PreheatTaskResponse | { error: string }> {
    let last = "no scheduler";
    for (const s of schedulers) {
      try {
        return await this.client(s).preheatTask(
          { download, scope, timeoutMs: BigInt(timeoutMs) },
          { signal, timeoutMs: timeoutMs + 10_000, headers: clusterTokenHeaders(this.clusterToken) },
        );
      } catch (err) {
        const e = fromConnectError(err, "DF_ERR_SCHEDULER_UNAVAILABLE");
        last = `${e.code}: ${e.message}`;
        if (signal.aborted || e.code !== "DF_ERR_SCHEDULER_UNAVAILABLE") break;
      }
    }
    return { error: last };
  }

  private client(s: SchedulerAddr): Client<typeof schedulerv1.SchedulerService> {
    const base = `${this.tls ? "https" : "http"}://${s.ip.includes(":") ? `[${s.ip}]` : s.ip}:${s.port}`;
    let c = this.clients.get(base);
    if (!c) {
      // By role, not host name: a scheduler registers the address it is
      // reached at, which its certificate need not name.
      const tls = this.tls ? { identity: this.tls, server: { roles: ["scheduler"] as const } } : undefined;
      c = createClient(schedulerv1.SchedulerService, createRpcTransport(base, tls));
      this.clients.set(base, c);
    }
    return c;
  }

  private async fail(id: number, why: string, error = why): Promise<void> {
    try {
      await this.finish(id, "FAILURE", { job_states: [{ error: why, results: [] }] }, error);
    } catch (err) {
      this.logger.error({ jobId: id, err: (err as Error).message }, "recording a failed job failed");
    }
  }

  private async finish(id: number, state: "SUCCESS" | "FAILURE", result: JobResult, error: string): Promise<void> {
    if (this.closing) return;
    await this.database.db
      .updateTable("jobs")
      .set({ state, result: JSON.stringify(result), error, updated_at: new Date().toISOString() })
      .where("id", "=", id)
      .execute();
    const type = this.types.get(id);
    this.types.delete(id);
    if (type) this.onState?.(type, state);
  }
}
