import type { Logger } from "../../common/logger.js";
import type { ManagerConfig } from "../../common/schemas.js";
import type { Database } from "../db/database.js";
import type { ClusterRegistry } from "../cluster-registry.js";
import type { JobRunner } from "../jobs/job-runner.js";
import type { LocalitySource } from "../extender/locality.js";

// What route plugins need; the manager builds it once.
export interface RouteContext {
  config: ManagerConfig;
  database: Database;
  logger: Logger;
  registry: ClusterRegistry;
  jobs: JobRunner;
  clusterToken: string | undefined;
  // Layer locality for the scheduler extender; none: every node scores 0.
  locality?: LocalitySource;
  // Host name -> Kubernetes node name (extender/pod-nodes.ts).
  nodeOf?: (host: string) => string;
}

export const now = (): string => new Date().toISOString();
