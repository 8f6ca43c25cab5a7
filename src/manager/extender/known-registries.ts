import type { Client } from "@connectrpc/connect";
import { DamselflyError } from "../../common/errors.js";
import { imageManifestUrl } from "../../common/image-ref.js";
import type { Logger } from "../../common/logger.js";
import { registryOf } from "../../common/task-id.js";
import type { schedulerv1 } from "../../protocol/index.js";
import type { SchedulerAddr } from "../jobs/job-types.js";

// Where the manager may resolve a pod's image reference: the registries the
// cluster's daemons have pulled blobs from (each scheduler knows them from
// its tasks' URLs: ListRegistries) and the ones configured
// (extender.registries). The extender's callers name image references; this
// keeps them from making the manager reach a registry of their choosing
// (egress to an address they pick, work at a server they run): a reference
// anywhere else is never resolved and scores 0.
//
// Registries are compared as task IDs name them (common/task-id.ts
// registryOf: scheme://host[:port], docker.io aliases folded), and a
// reference is read as containerd reads it (common/image-ref.ts: a short
// name is Docker Hub's, `library/` for one word).

// What one cluster's answer may add: a scheduler is trusted, but a bug must
// not grow the manager's memory.
const MAX_PER_CLUSTER = 256;
const MAX_ORIGIN_LENGTH = 300;
export const LIST_REGISTRIES_TIMEOUT_MS = 5_000;

// The registry of a reference, as the daemons' tasks name it; undefined when
// the reference does not parse.
export function referenceRegistry(ref: string): string | undefined {
  try {
    return registryOf(imageManifestUrl(ref)) || undefined;
  } catch {
    return undefined;
  }
}

// extender.registries entries (host[:port], as references name registries).
export function configuredRegistries(list: readonly string[]): string[] {
  return list.flatMap((r) => referenceRegistry(`${r}/x`) ?? []);
}

export interface KnownRegistriesDeps {
  clusters(): Promise<{ id: number; schedulers: SchedulerAddr[] }[]>;
  client(s: SchedulerAddr): Pick<Client<typeof schedulerv1.SchedulerService>, "listRegistries">;
  headers: Record<string, string>;
  logger: Logger;
  // extender.registries, already through configuredRegistries.
  configured: readonly string[];
}

// The allowed set, asked now: one ListRegistries per cluster (its first
// scheduler that answers). A cluster none of whose schedulers answer adds
// nothing (fails closed: no resolution at its registries this round).
export async function knownRegistries(deps: KnownRegistriesDeps, signal: AbortSignal, timeoutMs: number): Promise<Set<string>> {
  const out = new Set(deps.configured);
  for (const c of await deps.clusters()) {
    for (const s of c.schedulers) {
      if (signal.aborted) return out;
      try {
        const r = await deps.client(s).listRegistries({}, { signal, timeoutMs, headers: deps.headers });
        for (const origin of r.registries.slice(0, MAX_PER_CLUSTER)) if (origin.length <= MAX_ORIGIN_LENGTH) out.add(origin);
        break;
      } catch (err) {
        deps.logger.debug({ cluster: c.id, err: DamselflyError.from(err).message }, "extender: ListRegistries failed");
      }
    }
  }
  return out;
}

// Throws unless the reference's registry is allowed: for the manager API
// (GET /api/v1/images/layers), which answers the caller.
export function checkAllowed(ref: string, allowed: ReadonlySet<string>): void {
  const registry = referenceRegistry(ref);
  if (registry === undefined) throw new DamselflyError("DF_ERR_INVALID_REQUEST", `not an image reference: ${JSON.stringify(ref.slice(0, 256))}`);
  if (!allowed.has(registry)) {
    throw new DamselflyError(
      "DF_ERR_INVALID_REQUEST",
      `${registry} is not a registry the cluster's daemons have pulled from (nor in extender.registries): the manager does not resolve images there`,
    );
  }
}
