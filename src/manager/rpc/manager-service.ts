import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { managerv1, toConnectError } from "../../protocol/index.js";
import type { ClusterRegistry } from "../cluster-registry.js";

// The components' side of the manager (see manager.proto).
export function managerService(registry: ClusterRegistry): ServiceImpl<typeof managerv1.ManagerService> {
  return {
    async keepAliveScheduler(req) {
      try {
        return await registry.keepAlive(req);
      } catch (err) {
        throw toConnectError(err);
      }
    },
    async listSchedulers(req) {
      try {
        const cluster = Number(req.clusterId);
        const rows = await registry.activeSchedulers(cluster > 0 ? [cluster] : undefined);
        return create(managerv1.ListSchedulersResponseSchema, {
          schedulers: rows.map((r) => ({ clusterId: BigInt(r.cluster_id), hostname: r.hostname, ip: r.ip, port: r.port })),
        });
      } catch (err) {
        throw toConnectError(err);
      }
    },
  };
}
