import { createHash, timingSafeEqual } from "node:crypto";
import { DamselflyError } from "../common/errors.js";

// One shared secret for the calls between components that change the cluster
// or tell about it: scheduler <-> manager (registration, dynamic config,
// scheduler lists), manager -> scheduler (preheat and task jobs), scheduler ->
// daemon (delete task). Taken from DAMSELFLY_CLUSTER_TOKEN by every
// component; unset, those calls are open (a trusted network).
export const CLUSTER_TOKEN_HEADER = "x-damselfly-cluster-token";
export const CLUSTER_TOKEN_ENV = "DAMSELFLY_CLUSTER_TOKEN";

export function clusterTokenHeaders(token: string | undefined): Record<string, string> {
  return token ? { [CLUSTER_TOKEN_HEADER]: token } : {};
}

const digest = (s: string) => createHash("sha256").update(s).digest();

// Throws DF_ERR_UNAUTHENTICATED unless the request carries the expected token.
export function checkClusterToken(expected: string | undefined, headers: Headers): void {
  if (!expected) return;
  const got = headers.get(CLUSTER_TOKEN_HEADER);
  if (got === null || !timingSafeEqual(digest(got), digest(expected))) {
    throw new DamselflyError("DF_ERR_UNAUTHENTICATED", `missing or wrong ${CLUSTER_TOKEN_HEADER} (the cluster token, ${CLUSTER_TOKEN_ENV})`);
  }
}
