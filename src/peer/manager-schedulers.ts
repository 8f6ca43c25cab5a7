import { createClient } from "@connectrpc/connect";
import type { Logger } from "../common/logger.js";
import { clusterTokenHeaders, createManagerTransport, fromConnectError, managerv1 } from "../protocol/index.js";

// The schedulers the manager lists as active for our cluster, as HOST:PORT.
// Undefined when the manager cannot say (unreachable, or no active
// scheduler): the daemon then keeps its static --scheduler list, so a manager
// outage never stops downloads. With a cluster named, the answer also
// carries the cluster's dynamic daemon settings, handed to onConfig.
export async function schedulersFromManager(
  managerUrl: string,
  clusterId: number,
  log: Logger,
  clusterToken?: string,
  quiet = false,
  onConfig?: (c: managerv1.DaemonClusterConfig) => void,
): Promise<string[] | undefined> {
  const client = createClient(managerv1.ManagerService, createManagerTransport(managerUrl));
  try {
    const res = await client.listSchedulers({ clusterId: BigInt(clusterId) }, { timeoutMs: 5_000, headers: clusterTokenHeaders(clusterToken) });
    if (res.daemonConfig) onConfig?.(res.daemonConfig);
    const list = res.schedulers.map((s) => `${s.ip.includes(":") ? `[${s.ip}]` : s.ip}:${s.port}`);
    if (list.length === 0) {
      if (!quiet) log.warn({ manager: managerUrl, clusterId }, "the manager lists no active scheduler: using the static scheduler list");
      return undefined;
    }
    if (!quiet) log.info({ manager: managerUrl, clusterId, schedulers: list }, "schedulers from the manager");
    return list;
  } catch (err) {
    const e = fromConnectError(err, "DF_ERR_MANAGER_UNAVAILABLE");
    if (!quiet) log.warn({ manager: managerUrl, code: e.code, err: e.message }, "manager unreachable: using the static scheduler list");
    return undefined;
  }
}
