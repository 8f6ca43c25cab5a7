import { request } from "undici";
import { httpUrl, type HostPort } from "../common/address.js";
import { DamselflyError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { realClock, type Clock } from "../common/token-bucket.js";
import { KubeClient } from "../common/kubernetes/kube-client.js";
import { inClusterAccess } from "../common/kubernetes/in-cluster.js";
import type { DaemonConfig } from "../common/schemas.js";

// The node-ready signal: once this daemon's registry mirror answers, its
// Kubernetes node gets the label `readyLabel=true` (operators key pods on it
// with nodeAffinity) and loses the NoSchedule taint `notReadyTaint` (kubelet
// --register-with-taints puts it on a new node), so pods placed during a
// rollout never race the mirror. On shutdown the label turns false; the taint
// is not put back: a taint left by a daemon that is never coming back (an
// uninstall, a DaemonSet narrowed by nodeSelector) would keep every pod off
// the node, while a stale `false` label only keeps off the pods that asked.
//
// Attempts repeat with backoff until done; startup never waits for them. Once
// done, the daemon checks again every recheckMs: a label someone removed is
// put back, and a mirror that stopped answering turns the label false until
// it answers again. The
// node name comes from the downward API (spec.nodeName) of our own pod, and
// the API server's RBAC limits the daemon to nodes get/patch.

export interface NodeReadyOptions {
  nodeName: string;
  readyLabel: string;
  notReadyTaint: string;
  client: Pick<KubeClient, "getNode" | "patchNode">;
  // Resolves with the HTTP status of GET /v2/ on the mirror; rejects when it
  // does not answer.
  probe(signal: AbortSignal): Promise<number>;
  clock: Clock;
  logger: Logger;
  backoff?: { initialMs: number; maxMs: number };
  // How often a ready node is checked again (default 5 minutes).
  recheckMs?: number;
  // Called last by stop().
  closeClient?: () => Promise<void>;
}

const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 60_000 };
const DEFAULT_RECHECK_MS = 5 * 60_000;

export class NodeReady {
  state: "waiting" | "ready" | "stopped" = "waiting";
  // The attempt under way (tests await it between clock steps).
  running: Promise<void> = Promise.resolve();
  private timer: unknown;
  private delay: number;
  private lastError = "";
  // The label is true on the node (set by us, or found so): stop() turns it false.
  private labelled = false;
  private readonly ac = new AbortController();
  private readonly backoff: { initialMs: number; maxMs: number };

  constructor(private readonly o: NodeReadyOptions) {
    this.backoff = o.backoff ?? DEFAULT_BACKOFF;
    this.delay = this.backoff.initialMs;
  }

  start(): void {
    this.running = this.attempt();
  }

  // On drain: no more attempts; the label turns false (one try, bounded by
  // the client's timeout: the drain must not wait on the API server).
  async stop(): Promise<void> {
    this.o.clock.clearTimeout(this.timer);
    this.state = "stopped";
    this.ac.abort();
    await this.running;
    if (this.labelled) await this.markFalse("daemon stopping");
    await this.o.closeClient?.();
  }

  private async markFalse(why: string): Promise<void> {
    try {
      await this.o.client.patchNode(this.o.nodeName, { metadata: { labels: { [this.o.readyLabel]: "false" } } }, "merge");
      this.labelled = false;
      this.o.logger.info({ node: this.o.nodeName, label: `${this.o.readyLabel}=false` }, `node marked not ready for pulls (${why})`);
    } catch (err) {
      this.o.logger.warn({ node: this.o.nodeName, err: DamselflyError.from(err).message }, "could not mark the node not ready for pulls");
    }
  }

  private async attempt(): Promise<void> {
    if (this.state === "stopped") return;
    const wasReady = this.state === "ready";
    try {
      await this.once();
      if (this.stopped()) return;
      this.state = "ready";
      this.delay = this.backoff.initialMs;
      this.lastError = "";
      this.schedule(this.o.recheckMs ?? DEFAULT_RECHECK_MS);
    } catch (err) {
      if (this.stopped()) return;
      const e = DamselflyError.from(err);
      // A ready node whose mirror stopped answering is not ready for pulls.
      if (wasReady && e.code === "DF_ERR_MIRROR_UNAVAILABLE" && this.labelled) await this.markFalse("the registry mirror stopped answering");
      this.state = "waiting";
      // One line per change: a repeated failure is not logged again.
      const line = `${e.code}: ${e.message}`;
      if (line !== this.lastError) {
        this.o.logger.warn({ node: this.o.nodeName, code: e.code, err: e.message }, "node not marked ready for pulls yet, retrying");
        this.lastError = line;
      }
      this.schedule(this.delay);
      this.delay = Math.min(this.delay * 2, this.backoff.maxMs);
    }
  }

  // Read through a method: stop() may change the state while an attempt awaits.
  private stopped(): boolean {
    return this.state === "stopped";
  }

  private schedule(ms: number): void {
    this.timer = this.o.clock.setTimeout(() => {
      this.running = this.attempt();
    }, ms);
  }

  private async once(): Promise<void> {
    const { nodeName, readyLabel, notReadyTaint, client, logger } = this.o;
    let status: number;
    try {
      status = await this.o.probe(this.ac.signal);
    } catch (err) {
      throw new DamselflyError("DF_ERR_MIRROR_UNAVAILABLE", `the registry mirror does not answer GET /v2/: ${DamselflyError.from(err).message}`, {
        cause: err,
      });
    }
    const node = await client.getNode(nodeName, this.ac.signal);
    if (node.labels[readyLabel] !== "true") {
      await client.patchNode(nodeName, { metadata: { labels: { [readyLabel]: "true" } } }, "merge", this.ac.signal);
      logger.info({ node: nodeName, label: `${readyLabel}=true`, mirrorStatus: status }, "node marked ready for pulls: the registry mirror answers");
    }
    this.labelled = true;
    const i = node.taints.findIndex((t) => t.key === notReadyTaint);
    if (i >= 0) {
      // Conditional on the list not having moved since the GET (a 422 when it
      // did: the next attempt reads it again); a merge patch would overwrite
      // taints other controllers set meanwhile.
      const path = `/spec/taints/${i}`;
      await client.patchNode(
        nodeName,
        [
          { op: "test", path: `${path}/key`, value: notReadyTaint },
          { op: "remove", path },
        ],
        "json",
        this.ac.signal,
      );
      logger.info({ node: nodeName, taint: notReadyTaint }, "node taint removed: the registry mirror answers");
    }
  }
}

// GET /v2/ on the daemon's own mirror, as a container runtime would: any HTTP
// answer means the mirror serves (its status is the upstream's, e.g. 401 from
// a registry that wants a token, or 502/504 while the upstream is away: pulls
// then fall back to the upstream as they would without Damselfly). timeoutMs
// must outlast the mirror's own upstream timeout, or an air-gapped node that
// answers 504 after it would never be marked ready.
export async function probeMirror(proxy: HostPort, timeoutMs: number, signal: AbortSignal): Promise<number> {
  const res = await request(`${httpUrl(proxy)}/v2/`, {
    method: "GET",
    signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
    headersTimeout: timeoutMs,
  });
  await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
  return res.statusCode;
}

// The daemon's node-ready signal, when kubernetes.nodeName is set (the
// DaemonSet feeds it from the downward API); undefined when off, or when the
// service account is not usable (said once, the daemon serves on).
export function startNodeReady(c: DaemonConfig, proxy: HostPort, logger: Logger): NodeReady | undefined {
  const k = c.kubernetes;
  if (!k.nodeName) return undefined;
  let client: KubeClient;
  try {
    // A Node object is a few KiB (its status lists at most 50 images).
    client = new KubeClient({ ...inClusterAccess(k.serviceAccountDir), maxBodyBytes: 4 * 1024 * 1024 });
  } catch (err) {
    const e = DamselflyError.from(err);
    logger.error({ node: k.nodeName, code: e.code, err: e.message }, "node-ready signal off: no Kubernetes API access");
    return undefined;
  }
  const r = new NodeReady({
    nodeName: k.nodeName,
    readyLabel: k.readyLabel,
    notReadyTaint: k.notReadyTaint,
    client,
    probe: (signal) => probeMirror(proxy, c.source.timeout + 5_000, signal),
    clock: realClock,
    logger,
    closeClient: () => client.close(),
  });
  r.start();
  return r;
}
