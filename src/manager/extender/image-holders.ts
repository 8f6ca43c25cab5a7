import type { Client } from "@connectrpc/connect";
import type { Dispatcher } from "undici";
import type { schedulerv1 } from "../../protocol/index.js";
import type { SchedulerAddr } from "../jobs/job-types.js";
import { checkAllowed, knownRegistries } from "./known-registries.js";
import { resolveImageLayers } from "./image-layers.js";
import { clusterHolders } from "./batch-holders.js";
import type { SchedulerLocalityDeps } from "./scheduler-locality.js";

// Which nodes hold which layers of one image (reference + platform), asked
// now: the manager API's view of layer locality (the extender's index only
// tracks images pods asked about). Bounded by the image (a manifest lists at
// most what MAX_MANIFEST_BYTES holds) and the clusters.

export interface LayerHolders {
  digest: string;
  size: number;
  task_id: string;
  // Node names over every cluster, sorted, each once: a daemon's --hostname,
  // or its pod's node when the host name is a daemon pod's (pod-nodes.ts).
  nodes: string[];
}

export interface ImageHoldersDeps extends Pick<SchedulerLocalityDeps, "client" | "headers" | "logger" | "nodeOf"> {
  clusters(): Promise<{ id: number; schedulers: SchedulerAddr[] }[]>;
  registries: Dispatcher;
  // extender.registries (known-registries.ts configuredRegistries).
  configured: readonly string[];
  // ListRegistries too: where the image may be resolved.
  client(s: SchedulerAddr): Pick<Client<typeof schedulerv1.SchedulerService>, "listTaskPeers" | "listRegistries" | "listTaskHolders">;
}

const RPC_TIMEOUT_MS = 5_000;

export async function imageHolders(image: string, platform: string, deps: ImageHoldersDeps, signal: AbortSignal): Promise<LayerHolders[]> {
  // As for the extender: only at registries the daemons pulled from, so
  // this route reaches no registry a caller picks (400 otherwise).
  checkAllowed(image, await knownRegistries(deps, signal, RPC_TIMEOUT_MS));
  const layers = await resolveImageLayers(image, platform, signal, deps.registries);
  const opts = { client: deps.client, headers: deps.headers, logger: deps.logger, nodeOf: deps.nodeOf, signal, timeoutMs: RPC_TIMEOUT_MS };
  // The same asking as the extender's refresh: every layer in one batch.
  const ids = layers.map((l) => l.taskId);
  const nodes = new Map(ids.map((id) => [id, new Set<string>()]));
  for (const c of await deps.clusters()) {
    for (const [taskId, hosts] of await clusterHolders(c.schedulers, ids, opts)) for (const h of hosts) nodes.get(taskId)?.add(h);
  }
  return layers.map((l) => ({ digest: l.digest, size: l.size, task_id: l.taskId, nodes: [...(nodes.get(l.taskId) ?? [])].sort() }));
}
