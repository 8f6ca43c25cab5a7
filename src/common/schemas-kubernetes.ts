// Config fields of the Kubernetes API integrations; used by schemas.ts. No
// flags (the daemon's --help stays short): the DaemonSet sets them by env.
import { field } from "./config.js";
import { SERVICE_ACCOUNT_DIR } from "./kubernetes/in-cluster.js";

// A label key or taint key: [prefix/]name, as Kubernetes validates them.
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const qualifiedName = (v: string) => (v.length <= 317 && QUALIFIED_NAME.test(v) ? undefined : "must be a Kubernetes label key, e.g. damselfly.io/mirror-ready");
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const optionalNodeName = (v: string) => (v === "" || DNS_SUBDOMAIN.test(v) ? undefined : "must be a Kubernetes node name (or empty: off)");
const podsMode = (v: string) => (["auto", "on", "off"].includes(v) ? undefined : "must be auto, on or off");

const serviceAccountDir = () =>
  field("string", SERVICE_ACCOUNT_DIR, "directory of the service account token, ca.crt and namespace used to call the Kubernetes API server");

// The daemon: the node-ready signal (peer/node-ready.ts).
export function daemonKubernetesGroup() {
  return {
    nodeName: field(
      "string",
      "",
      "Kubernetes node this daemon runs on (the downward API's spec.nodeName): once its registry mirror answers, the node gets the label readyLabel=true and loses the taint notReadyTaint; on shutdown the label turns false (empty: off)",
      { check: optionalNodeName },
    ),
    readyLabel: field("string", "damselfly.io/mirror-ready", "node label set to true when this node's mirror answers, false when the daemon stops", {
      check: qualifiedName,
    }),
    notReadyTaint: field("string", "damselfly.io/mirror-not-ready", "node taint key removed when this node's mirror answers (kubelet --register-with-taints)", {
      check: qualifiedName,
    }),
    serviceAccountDir: serviceAccountDir(),
  };
}

// The manager: daemon pod name (a daemon's --hostname in the DaemonSet) ->
// the node it runs on, as the API server says (extender/pod-nodes.ts).
export function managerKubernetesGroup() {
  return {
    pods: field(
      "string",
      "auto",
      "map daemon host names that are pod names to their pods' nodes for the extender and /api/v1/images/layers: on, off, or auto (on when running in a pod with a service account)",
      { check: podsMode },
    ),
    namespace: field("string", "", "namespace of the daemon pods (default: the manager's own)"),
    selector: field("string", "app.kubernetes.io/name=damselfly,app.kubernetes.io/component=daemon", "label selector of the daemon pods"),
    interval: field("duration", 30_000, "how often the daemon pods are listed", { check: (v) => (v >= 1_000 ? undefined : "must be >= 1s") }),
    serviceAccountDir: serviceAccountDir(),
  };
}
