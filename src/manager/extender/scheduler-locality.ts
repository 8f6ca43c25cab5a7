import type { Client } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { schedulerv1 } from "../../protocol/index.js";
import type { SchedulerAddr } from "../jobs/job-types.js";
import { clusterHolders } from "./batch-holders.js";
import { referenceRegistry } from "./known-registries.js";
import { NodeLayerIndex, type ImageLayerSource, type Layer, type LayerIndex, type LocalitySource } from "./locality.js";

// A LocalitySource built from the schedulers, off the request path: images
// pods asked about (wanted) are resolved to layers in the background, then
// every refresh asks one scheduler per cluster which hosts hold each tracked
// layer (ListTaskPeers) and swaps in a new index. A pod whose images are new
// scores 0 everywhere on its first call (filter, which comes first, gives a
// head start); later pods of the same image are scored. Only references at
// registries the daemons pulled from are resolved (known-registries.ts).
//
// Cost: one ListTaskHolders per 50 tracked layers per cluster per refresh
// (batch-holders.ts; ListTaskPeers per layer with older schedulers);
// bounded by maxLayers.

export interface SchedulerLocalityDeps {
  clusters(): Promise<{ id: number; schedulers: SchedulerAddr[] }[]>;
  // listTaskHolders: batch-holders.ts (without it, ListTaskPeers per layer).
  client(
    s: SchedulerAddr,
  ): Pick<Client<typeof schedulerv1.SchedulerService>, "listTaskPeers"> & Partial<Pick<Client<typeof schedulerv1.SchedulerService>, "listTaskHolders">>;
  headers: Record<string, string>;
  // Image reference -> its layers for the nodes' platform (registry I/O).
  resolve(image: string, signal: AbortSignal): Promise<Layer[]>;
  // Registries resolve() may reach (known-registries.ts): any other
  // reference is dropped unresolved, with no request anywhere.
  allowed(signal: AbortSignal): Promise<ReadonlySet<string>>;
  logger: Logger;
  // Host name -> node name (pod-nodes.ts); none: host names are node names.
  nodeOf?: (host: string) => string;
}

export interface SchedulerLocalityLimits {
  maxImages: number; // tracked at once; the least recently wanted goes first
  maxPending: number; // awaiting resolution; more are dropped until the next ask
  maxLayers: number; // layer tasks asked about per refresh
  rpcTimeoutMs: number;
  resolveTimeoutMs: number;
}

export const DEFAULT_LOCALITY_LIMITS: SchedulerLocalityLimits = Object.freeze({
  maxImages: 1_000,
  maxPending: 256,
  maxLayers: 20_000,
  rpcTimeoutMs: 5_000,
  resolveTimeoutMs: 30_000,
});

export class SchedulerLocality implements LocalitySource {
  // Insertion order = recency (re-inserted when wanted again).
  private readonly tracked = new Map<string, readonly Layer[]>();
  private readonly pending = new Set<string>();
  private snapshot: { images: ImageLayerSource; index: LayerIndex };
  private readonly ac = new AbortController();
  private running: Promise<void> | undefined;
  // Set while the loop sleeps: cuts the sleep short when new images arrive.
  private wake: (() => void) | undefined;

  constructor(
    private readonly deps: SchedulerLocalityDeps,
    private readonly limits: SchedulerLocalityLimits = DEFAULT_LOCALITY_LIMITS,
  ) {
    this.snapshot = { images: this.imageSource(), index: new NodeLayerIndex() };
  }

  current(): { images: ImageLayerSource; index: LayerIndex } {
    return this.snapshot;
  }

  wanted(images: readonly string[]): void {
    for (const image of images) {
      const layers = this.tracked.get(image);
      if (layers) {
        this.tracked.delete(image);
        this.tracked.set(image, layers);
      } else if (this.pending.size < this.limits.maxPending && !this.pending.has(image)) {
        this.pending.add(image);
        const wake = this.wake;
        this.wake = undefined;
        wake?.();
      }
    }
  }

  // Refreshes every intervalMs, and soon after a pod names an image not
  // tracked yet (once a second at most), until stop().
  start(intervalMs: number): void {
    const loop = async (): Promise<void> => {
      while (!this.ac.signal.aborted) {
        if (this.tracked.size > 0 || this.pending.size > 0) await this.refresh();
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            this.wake = undefined;
            // One listener per sleep would pile up on the signal otherwise.
            this.ac.signal.removeEventListener("abort", done);
            resolve();
          };
          const t = setTimeout(done, intervalMs);
          t.unref();
          this.wake = () => setTimeout(done, 1_000).unref();
          this.ac.signal.addEventListener("abort", done, { once: true });
        });
      }
    };
    this.running = loop().catch((err: unknown) => this.deps.logger.error({ err: DamselflyError.from(err).message }, "extender: locality refresh stopped"));
  }

  async stop(): Promise<void> {
    this.ac.abort();
    await this.running;
  }

  // One round: resolve what is pending, then rebuild the index. Errors are
  // logged and leave the previous index in place (stale beats empty).
  async refresh(): Promise<void> {
    await this.resolvePending();
    try {
      const index = await this.buildIndex();
      this.snapshot = { images: this.imageSource(), index };
      this.deps.logger.debug({ images: this.tracked.size, layers: index.taskCount }, "extender: layer index refreshed");
    } catch (err) {
      this.deps.logger.warn({ err: DamselflyError.from(err).message }, "extender: layer index refresh failed, keeping the previous one");
    }
  }

  private imageSource(): ImageLayerSource {
    const copy = new Map(this.tracked);
    return { layers: (image) => copy.get(image) };
  }

  private async resolvePending(): Promise<void> {
    const batch = [...this.pending];
    this.pending.clear();
    if (batch.length === 0) return;
    const allowed = await this.allowedRegistries();
    for (const image of batch) {
      if (this.ac.signal.aborted) return;
      const registry = referenceRegistry(image);
      if (registry === undefined || !allowed.has(registry)) {
        this.deps.logger.debug({ image: image.slice(0, 256) }, "extender: image not at a registry the daemons pulled from, not resolved");
        continue;
      }
      const signal = AbortSignal.any([this.ac.signal, AbortSignal.timeout(this.limits.resolveTimeoutMs)]);
      try {
        this.tracked.set(image, await this.deps.resolve(image, signal));
      } catch (err) {
        // Not retried until a pod asks again: a bad reference must not loop.
        this.deps.logger.info({ image: image.slice(0, 256), err: DamselflyError.from(err).message }, "extender: image not resolved");
        continue;
      }
      while (this.tracked.size > this.limits.maxImages) this.tracked.delete(this.tracked.keys().next().value!);
    }
  }

  // Fails closed: no answer allows nothing this round.
  private async allowedRegistries(): Promise<ReadonlySet<string>> {
    try {
      return await this.deps.allowed(AbortSignal.any([this.ac.signal, AbortSignal.timeout(this.limits.rpcTimeoutMs)]));
    } catch (err) {
      this.deps.logger.warn({ err: DamselflyError.from(err).message }, "extender: registries the daemons pulled from unknown, resolving nothing");
      return new Set();
    }
  }

  private async buildIndex(): Promise<NodeLayerIndex> {
    const tasks = new Set<string>();
    for (const layers of this.tracked.values()) for (const l of layers) if (tasks.size < this.limits.maxLayers) tasks.add(l.taskId);
    const index = new NodeLayerIndex();
    const ids = [...tasks];
    const { client, headers, logger, nodeOf } = this.deps;
    for (const c of await this.deps.clusters()) {
      if (this.ac.signal.aborted) return index;
      const o = { client, headers, logger, nodeOf, signal: this.ac.signal, timeoutMs: this.limits.rpcTimeoutMs };
      const held = await clusterHolders(c.schedulers, ids, o);
      for (const [taskId, hosts] of held) for (const host of hosts) index.add(host, taskId);
    }
    return index;
  }
}
