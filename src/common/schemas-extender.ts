// Config fields of the manager's Kubernetes scheduler extender (routes/extender.ts) kept out of schemas.ts (its size).
import { field } from "./config.js";
import { positive } from "./schema-checks.js";
import { managerKubernetesGroup } from "./schemas-kubernetes.js";

// A registry as a pod's image reference names it: host[:port], no scheme.
const registryList = (v: readonly string[]) =>
  v.length > 256
    ? "at most 256 registries"
    : v.find((r) => !/^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/i.test(r))
      ? "registries are host[:port], without a scheme or a path"
      : undefined;

// Layer locality resolves the image references pods name, but only at
// registries the cluster's daemons have pulled from (the schedulers know
// them: manager/extender/known-registries.ts) or listed here: a caller of the
// /extender/v1 routes cannot make the manager reach anywhere else.
function extenderRegistriesField() {
  return field("list", [] as string[], "registries (host[:port]) the extender may resolve images at before any daemon pulled from them", {
    check: registryList,
  });
}

// The manager's `extender` group. With locality on, images are resolved only
// at registries the daemons pulled from, and with TLS the routes need a
// client certificate.
export function extenderGroup() {
  return {
    registries: extenderRegistriesField(),
    locality: field(
      "bool",
      true,
      "score nodes by the layers they hold for /extender/v1/prioritize (images resolved only at registries the daemons pulled from)",
    ),
    platform: field("string", "linux/amd64", "platform of the nodes' images (os/arch[/variant]) for the extender"),
    refreshInterval: field("duration", 30_000, "how often the extender asks the schedulers which nodes hold the tracked layers", { check: positive }),
    kubernetes: managerKubernetesGroup(),
  };
}
