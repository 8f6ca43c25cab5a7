import { DamselflyError } from "../../common/errors.js";

// The Kubernetes scheduler extender protocol (k8s.io/kube-scheduler/extender/v1).
// The Go structs carry no json tags, so on the wire the keys are the Go field
// names: {"Pod", "Nodes", "NodeNames"} in, [{"Host", "Score"}] and
// {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
// out. Go's decoder matches keys case-insensitively, so we do too on input;
// on output we write exactly the Go names.
//
// The caller is untrusted (anyone who can reach the manager's port): the body
// is bounded by the route's byte limit, and here by counts (nodes, containers,
// name lengths) so one request cannot make us score a million nodes.

export const MIN_EXTENDER_PRIORITY = 0;
export const MAX_EXTENDER_PRIORITY = 10;

export const EXTENDER_LIMITS = Object.freeze({
  // With NodeNames (nodeCacheCapable: true, what the docs advise) 5,000 nodes
  // are ~100 KiB; a whole v1.NodeList is a few KiB per node. 16 MiB takes
  // ~2,000 real Nodes and bounds what one unauthenticated JSON.parse costs.
  // The route sets its bodyLimit from this.
  maxBodyBytes: 16 * 1024 * 1024,
  maxNodes: 5_000,
  // Kubernetes' own bounds: a node name is a DNS subdomain (253), an image
  // reference is bounded in practice well under 4 KiB.
  maxNodeNameLength: 253,
  maxContainers: 256,
  maxImageRefLength: 4_096,
});

export interface HostPriority {
  Host: string;
  Score: number;
}
export type HostPriorityList = HostPriority[];

export type FailedNodesMap = Record<string, string>;

export interface ExtenderFilterResult {
  // The caller's own v1.NodeList, echoed back when it sent one.
  Nodes?: Record<string, unknown> | null;
  NodeNames?: string[] | null;
  FailedNodes: FailedNodesMap;
  FailedAndUnresolvableNodes: FailedNodesMap;
  Error: string;
}

// What the scoring core needs from ExtenderArgs, checked and bounded.
export interface ParsedExtenderArgs {
  // Pod namespace/name, for logs only.
  pod: string;
  // Image references of the pod's containers, init containers and ephemeral
  // containers, deduplicated, in order of first appearance.
  images: string[];
  // The candidate nodes, in the order the scheduler gave them.
  nodeNames: string[];
  // The v1.NodeList, when the caller sent full Node objects (nodeCacheCapable:
  // false): a filter answer then returns it in `Nodes`.
  nodes: Obj | null;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function bad(message: string): DamselflyError {
  return new DamselflyError("DF_ERR_INVALID_REQUEST", `extender: ${message}`);
}

// Go's encoding/json: an exact key wins, else the first case-insensitive match.
function field(o: Obj, name: string): unknown {
  if (Object.hasOwn(o, name)) return o[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(o)) if (k.toLowerCase() === lower) return o[k];
  return undefined;
}

function nodeName(v: unknown, where: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > EXTENDER_LIMITS.maxNodeNameLength) {
    throw bad(`${where}: a node name is a non-empty string of at most ${EXTENDER_LIMITS.maxNodeNameLength} characters`);
  }
  return v;
}

function podImages(spec: Obj): string[] {
  const seen = new Set<string>();
  let count = 0;
  // Field names of v1.PodSpec (these do carry json tags: camelCase).
  for (const key of ["initContainers", "containers", "ephemeralContainers"]) {
    const list = spec[key];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw bad(`Pod.spec.${key} must be an array`);
    count += list.length;
    if (count > EXTENDER_LIMITS.maxContainers) throw bad(`a pod has at most ${EXTENDER_LIMITS.maxContainers} containers`);
    for (const c of list) {
      if (!isObj(c)) throw bad(`Pod.spec.${key}[] must be objects`);
      const image = c.image;
      if (image === undefined || image === "") continue;
      if (typeof image !== "string" || image.length > EXTENDER_LIMITS.maxImageRefLength) throw bad(`Pod.spec.${key}[].image must be a string`);
      seen.add(image);
    }
  }
  return [...seen];
}

function parseNodes(nodesField: unknown, namesField: unknown): { nodeNames: string[]; nodes: Obj | null } {
  if (namesField !== undefined && namesField !== null) {
    if (!Array.isArray(namesField)) throw bad("NodeNames must be an array of strings");
    if (namesField.length > EXTENDER_LIMITS.maxNodes) throw bad(`at most ${EXTENDER_LIMITS.maxNodes} nodes per request`);
    return { nodeNames: namesField.map((n, i) => nodeName(n, `NodeNames[${i}]`)), nodes: null };
  }
  if (nodesField !== undefined && nodesField !== null) {
    if (!isObj(nodesField)) throw bad("Nodes must be a v1.NodeList object");
    const items = nodesField.items ?? [];
    if (!Array.isArray(items)) throw bad("Nodes.items must be an array");
    if (items.length > EXTENDER_LIMITS.maxNodes) throw bad(`at most ${EXTENDER_LIMITS.maxNodes} nodes per request`);
    const nodeNames = items.map((n, i) => {
      const meta = isObj(n) ? n.metadata : undefined;
      return nodeName(isObj(meta) ? meta.name : undefined, `Nodes.items[${i}].metadata.name`);
    });
    return { nodeNames, nodes: nodesField };
  }
  // The scheduler always sends one of the two; none is a malformed call.
  throw bad("ExtenderArgs needs NodeNames or Nodes");
}

export function parseExtenderArgs(body: unknown): ParsedExtenderArgs {
  if (!isObj(body)) throw bad("the body must be an ExtenderArgs JSON object");
  const pod = field(body, "Pod");
  if (!isObj(pod)) throw bad("ExtenderArgs.Pod must be a v1.Pod object");
  const spec = pod.spec;
  if (!isObj(spec)) throw bad("Pod.spec must be an object");
  const meta = isObj(pod.metadata) ? pod.metadata : {};
  const ns = typeof meta.namespace === "string" ? meta.namespace.slice(0, 253) : "";
  const name = typeof meta.name === "string" ? meta.name.slice(0, 253) : "";
  const { nodeNames, nodes } = parseNodes(field(body, "Nodes"), field(body, "NodeNames"));
  return { pod: ns ? `${ns}/${name}` : name, images: podImages(spec), nodeNames, nodes };
}

// A filter that keeps every node: locality is a preference, never a reason to
// refuse a node (a node without the layers can still pull them).
export function filterAll(args: ParsedExtenderArgs): ExtenderFilterResult {
  return {
    Nodes: args.nodes,
    NodeNames: args.nodes === null ? args.nodeNames : null,
    FailedNodes: {},
    FailedAndUnresolvableNodes: {},
    Error: "",
  };
}
