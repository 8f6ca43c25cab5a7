import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { advertisedIp, type HostPort } from "../common/address.js";
import { DamselflyError } from "../common/errors.js";
import type { DaemonConfig } from "../common/schemas.js";
import type { managerv1 } from "../protocol/index.js";
import type { HostRateLimits } from "./rate-limits.js";
import { CLUSTER_CONFIG } from "../common/cluster-config.js";
import { valueAt } from "../common/config.js";
import type { TlsIdentity } from "../common/tls/identity.js";

// The host rate limits: the cluster's dynamic value of each key where the
// manager sets one, else this daemon's own (common/cluster-config.ts).
export function hostRateLimits(config: DaemonConfig, cluster?: managerv1.DaemonClusterConfig): HostRateLimits {
  const out = {} as HostRateLimits;
  for (const k of CLUSTER_CONFIG) {
    if (k.component !== "daemon") continue;
    const dynamic = cluster?.[k.key];
    out[k.key] = dynamic === undefined ? (valueAt(config, k.configKey) as number) : Number(dynamic);
  }
  return out;
}

export interface HostIdentity {
  hostId: string;
  name: string;
  ip: string;
}

// Who this host is to the scheduler: stable across restarts for the same
// name, address, upload port and role. With TLS the name defaults to the
// certificate's: the scheduler binds a host to the certificate that names it.
export function hostIdentity(c: DaemonConfig, upload: HostPort, tls?: TlsIdentity): HostIdentity {
  const ip = c.host.advertiseIp || advertisedIp(upload.host);
  const name = c.host.hostname || tls?.identity.name || osHostname();
  const hostId = `${name}-${createHash("sha256").update(`${name}|${ip}|${upload.port}|${c.seed}`).digest("hex").slice(0, 12)}`;
  return { hostId, name, ip };
}

// Only the limits that are set: most daemons have none.
export function limitsForLog(l: object): Record<string, number> {
  return Object.fromEntries(Object.entries(l).filter(([, v]) => typeof v === "number" && v > 0));
}

export async function readPem(path: string, what: string): Promise<string> {
  try {
    const pem = await readFile(path, "utf8");
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in the file");
    return pem;
  } catch (err) {
    throw new DamselflyError("DF_ERR_CONFIG", `${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}
