import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DamselflyError } from "../errors.js";

// Where a pod finds the API server and its own credentials, as client-go's
// rest.InClusterConfig does: the service's address from the env the kubelet
// sets, the service account's token, CA and namespace from the projected
// volume. Nothing here is read from a peer or from the network.

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export interface KubeAccess {
  // https://HOST:PORT
  server: string;
  // Re-read before each call: the kubelet rotates projected tokens.
  tokenFile: string;
  caFile: string;
  // The pod's own namespace (undefined when the file is not there).
  namespace: string | undefined;
}

const TOKEN_FILE = "token";
const CA_FILE = "ca.crt";
const NAMESPACE_FILE = "namespace";
// A namespace is a DNS label.
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

// Whether this process runs in a pod with a service account token (the
// manager's default for the extender's pod map).
export function runningInCluster(dir: string = SERVICE_ACCOUNT_DIR, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) && existsSync(join(dir, TOKEN_FILE));
}

// The API server and credentials of this pod; DF_ERR_KUBE_CONFIG, saying what
// is missing, when it does not run in a pod with a service account token.
export function inClusterAccess(dir: string = SERVICE_ACCOUNT_DIR, env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const host = env.KUBERNETES_SERVICE_HOST ?? "";
  const port = env.KUBERNETES_SERVICE_PORT ?? "";
  if (!host || !/^\d{1,5}$/.test(port)) {
    throw new DamselflyError("DF_ERR_KUBE_CONFIG", "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a Kubernetes pod");
  }
  for (const f of [TOKEN_FILE, CA_FILE]) {
    if (!existsSync(join(dir, f))) {
      throw new DamselflyError("DF_ERR_KUBE_CONFIG", `${join(dir, f)} is missing: mount the service account token (automountServiceAccountToken: true)`);
    }
  }
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    tokenFile: join(dir, TOKEN_FILE),
    caFile: join(dir, CA_FILE),
    namespace: readNamespace(join(dir, NAMESPACE_FILE)),
  };
}

function readNamespace(file: string): string | undefined {
  try {
    const ns = readFileSync(file, "utf8").slice(0, 256).trim();
    return NAMESPACE.test(ns) ? ns : undefined;
  } catch {
    return undefined;
  }
}
