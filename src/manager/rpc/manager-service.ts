import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { checkClusterToken, managerv1, toConnectError } from "../../protocol/index.js";
import { requireRole } from "../../protocol/caller.js";
import type { Role } from "../../common/tls/roles.js";
import type { ClusterRegistry } from "../cluster-registry.js";

// Who may call what, from the caller's certificate (with TLS; without it
// the manager serves loopback only and everyone is trusted, as before).
// Only a scheduler may register and keep alive: whatever registers is sent
// preheat jobs with the registry credentials in them.
const SCHEDULER_ONLY: readonly Role[] = ["scheduler"];
const LISTERS: readonly Role[] = ["peer", "seed-peer", "scheduler", "client"];

// The components' side of the manager (see manager.proto).
export function managerService(registry: ClusterRegistry, clusterToken: string | undefined): ServiceImpl<typeof managerv1.ManagerService> {
  return {
    async keepAliveScheduler(req, ctx) {
      try {
        requireRole(ctx, SCHEDULER_ONLY, "KeepAliveScheduler");
        checkClusterToken(clusterToken, ctx.requestHeader);
        return await registry.keepAlive(req);
      } catch (err) {
        throw toConnectError(err);
      }
    },
    async leaveScheduler(req, ctx) {
      try {
        requireRole(ctx, SCHEDULER_ONLY, "LeaveScheduler");
        checkClusterToken(clusterToken, ctx.requestHeader);
        await registry.leave(req.ip, req.port);
        return create(managerv1.LeaveSchedulerResponseSchema, {});
      } catch (err) {
        throw toConnectError(err);
      }
    },
    async listSchedulers(req, ctx) {
      try {
        requireRole(ctx, LISTERS, "ListSchedulers");
        checkClusterToken(clusterToken, ctx.requestHeader);
        const cluster = Number(req.clusterId);
        const rows = await registry.activeSchedulers(cluster > 0 ? [cluster] : undefined);
        // One cluster named: its daemons also take their dynamic settings.
        const daemonConfig = cluster > 0 && Number.isSafeInteger(cluster) ? await registry.daemonConfig(cluster) : undefined;
        return create(managerv1.ListSchedulersResponseSchema, {
          schedulers: rows.map((r) => ({ clusterId: BigInt(r.cluster_id), hostname: r.hostname, ip: r.ip, port: r.port })),
          ...(daemonConfig ? { daemonConfig } : {}),
        });
      } catch (err) {
        throw toConnectError(err);
      }
    },
  };
}
