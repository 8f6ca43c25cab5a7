// Config fields of the manager's Kubernetes scheduler extender (routes/extender.ts); used by schemas.ts.
import { field } from "./config.js";

const positive = (v: number) => (v > 0 ? undefined : "must be > 0");

// A registry as a pod's image reference names it: host[:port], no scheme.
const registryList = (v: readonly string[]) =>
  v.length > 256
    ? "at most 256 registries"
    : v.find((r) => !/^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/i.test(r))
      ? "registries are host[:port], without a scheme or a path"
      : undefined;

// Layer locality resolves the image references pods name, but only at
// registries the cluster's daemons have pulled from (the schedulers know
// them) or that `registries` lists: a caller of the /extender/v1 routes
// cannot make the manager reach anywhere else. With TLS those routes also
// need a client certificate of the CA (docs/operations/kubernetes-extender.md).
export function extenderGroup() {
  return {
    locality: field(
      "bool",
      true,
      "score nodes by the layers they hold for /extender/v1/prioritize (images resolved only at registries the daemons pulled from)",
    ),
    platform: field("string", "linux/amd64", "platform of the nodes' images (os/arch[/variant]) for the extender"),
    refreshInterval: field("duration", 30_000, "how often the extender asks the schedulers which nodes hold the tracked layers", { check: positive }),
    registries: field("list", [] as string[], "registries (host[:port]) the extender may resolve images at before any daemon pulled from them", {
      check: registryList,
    }),
  };
}
