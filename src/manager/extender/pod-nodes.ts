import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { inClusterAccess, runningInCluster } from "../../common/kubernetes/in-cluster.js";
import { KubeClient } from "../../common/kubernetes/kube-client.js";
import type { ManagerConfig } from "../../common/schemas.js";

// Host name -> Kubernetes node name, for the extender. In the DaemonSet a
// daemon's --hostname is its pod's name (the only name cert-manager's CSI
// driver can put in its certificate, and the scheduler binds announced host
// names to certificate names), while the extender scores node names. The
// node of a pod is what the API server says (spec.nodeName), never what a
// peer claims. A host name that is no daemon pod's is used as it is: bare
// metal, or the certs-job overlay where --hostname is the node name.

export interface PodNodesOptions {
  client: Pick<KubeClient, "listPods">;
  namespace: string;
  selector: string;
  logger: Logger;
  maxPods?: number;
}

export const MAX_PODS = 50_000;

export class PodNodes {
  private map: ReadonlyMap<string, string> = new Map();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastError = "";
  private readonly ac = new AbortController();

  constructor(private readonly o: PodNodesOptions) {}

  // The node a host runs on: its pod's node when the host name is a daemon
  // pod's name, else the host name itself.
  readonly nodeOf = (host: string): string => this.map.get(host) ?? host;

  get size(): number {
    return this.map.size;
  }

  // One LIST; on failure the last map stays (stale beats empty: pods rarely move).
  async refresh(): Promise<void> {
    try {
      const { pods, truncated } = await this.o.client.listPods(
        this.o.namespace,
        { labelSelector: this.o.selector, limit: 500, maxItems: this.o.maxPods ?? MAX_PODS },
        this.ac.signal,
      );
      const next = new Map<string, string>();
      for (const p of pods) if (p.nodeName) next.set(p.name, p.nodeName);
      if (truncated) this.o.logger.warn({ pods: next.size }, "extender: more daemon pods than the pod map holds; the rest keep their host names");
      if (this.lastError || next.size !== this.map.size)
        this.o.logger.info({ pods: next.size, namespace: this.o.namespace }, "extender: daemon pod -> node map updated");
      this.map = next;
      this.lastError = "";
    } catch (err) {
      if (this.ac.signal.aborted) return;
      const e = DamselflyError.from(err);
      const line = `${e.code}: ${e.message}`;
      if (line !== this.lastError)
        this.o.logger.warn({ code: e.code, err: e.message, pods: this.map.size }, "extender: listing daemon pods failed, keeping the last map");
      this.lastError = line;
    }
  }

  start(intervalMs: number): void {
    const tick = () => {
      this.running = this.refresh().finally(() => {
        if (!this.ac.signal.aborted) this.timer = setTimeout(tick, intervalMs).unref();
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.ac.abort();
    clearTimeout(this.timer);
    await this.running;
  }
}

// The manager's pod map per extender.kubernetes; undefined when off (or
// auto outside a pod). "on" without API access fails the start: asked for,
// it must work.
export function podNodesFromConfig(c: ManagerConfig, logger: Logger): { pods: PodNodes; client: KubeClient } | undefined {
  const k = c.extender.kubernetes;
  if (k.pods === "off" || (k.pods === "auto" && !runningInCluster(k.serviceAccountDir))) return undefined;
  const access = inClusterAccess(k.serviceAccountDir);
  const namespace = k.namespace || access.namespace;
  if (!namespace) {
    throw new DamselflyError("DF_ERR_KUBE_CONFIG", `no namespace: set extender.kubernetes.namespace (${k.serviceAccountDir}/namespace is missing)`);
  }
  const client = new KubeClient(access);
  return { pods: new PodNodes({ client, namespace, selector: k.selector, logger }), client };
}
