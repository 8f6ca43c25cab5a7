import { createClient, type Client } from "@connectrpc/connect";
import type { Logger } from "../common/logger.js";
import type { TlsIdentity } from "../common/tls/identity.js";
import { clusterTokenHeaders, createManagerTransport, fromConnectError, managerv1 } from "../protocol/index.js";

type ManagerClient = Client<typeof managerv1.ManagerService>;
const NO_TLS = {};
const clients = new WeakMap<object, Map<string, ManagerClient>>();

// One client (one connection pool) per manager URL and identity, kept
// across the periodic refreshes.
function managerClient(url: string, tls: TlsIdentity | undefined): ManagerClient {
  let byUrl = clients.get(tls ?? NO_TLS);
  if (!byUrl) clients.set(tls ?? NO_TLS, (byUrl = new Map()));
  let c = byUrl.get(url);
  if (!c) {
    const transport = createManagerTransport(url, tls ? { identity: tls, server: { roles: ["manager"], verifyHostname: true } } : undefined);
    byUrl.set(url, (c = createClient(managerv1.ManagerService, transport)));
  }
  return c;
}

// The schedulers the manager lists as active for our cluster, as HOST:PORT.
// Undefined when the manager cannot say (unreachable, or no active
// scheduler): the daemon then keeps its static --scheduler list, so a manager
// outage never stops downloads. With a cluster named, the answer also
// carries the cluster's dynamic daemon settings, handed to onConfig.
// With `tls`, the manager is dialled over mutual TLS and must show a manager
// certificate naming the URL's host: the cluster token and our certificate
// go to nobody else, and nobody else can hand us a scheduler list.
export async function schedulersFromManager(
  managerUrl: string,
  clusterId: number,
  log: Logger,
  clusterToken?: string,
  quiet = false,
  onConfig?: (c: managerv1.DaemonClusterConfig) => void,
  tls?: TlsIdentity,
): Promise<string[] | undefined> {
  const client = managerClient(managerUrl, tls);
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
