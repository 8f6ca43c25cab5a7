import { MAX_EXTENDER_PRIORITY, MIN_EXTENDER_PRIORITY, type HostPriorityList, type ParsedExtenderArgs } from "./protocol.js";

// Layer locality scoring, with no I/O: the caller resolves the pod's images to
// layers and keeps an index of which node holds which layer task beforehand
// (resolution is network-bound, a prioritize call must answer in milliseconds).

// One layer of an image: its blob digest, size in bytes (from the manifest)
// and the task ID daemons store it under (digest + registry, see
// protocol/downloads.ts blobDownload), which is what the schedulers know.
export interface Layer {
  digest: string;
  size: number;
  taskId: string;
}

// Image reference (as written in the pod) -> its layers for the nodes'
// platform, from a cache filled off the request path. undefined: not known
// (yet); such an image adds nothing to any node's score.
export interface ImageLayerSource {
  layers(image: string): readonly Layer[] | undefined;
}

// Which nodes (daemon --hostname, the Kubernetes node name) hold a task.
// Inverted (task -> nodes) because a pod names a few layers while a cluster has
// thousands of nodes: scoring then costs O(layers x holders), not O(nodes x held).
export interface LayerIndex {
  holders(taskId: string): ReadonlySet<string> | undefined;
}

export class NodeLayerIndex implements LayerIndex {
  private readonly byTask = new Map<string, Set<string>>();

  // From the natural shape of the data ("node -> set of task IDs held").
  static fromNodes(nodes: Iterable<readonly [string, Iterable<string>]>): NodeLayerIndex {
    const idx = new NodeLayerIndex();
    for (const [node, tasks] of nodes) for (const t of tasks) idx.add(node, t);
    return idx;
  }

  add(node: string, taskId: string): void {
    let s = this.byTask.get(taskId);
    if (!s) {
      s = new Set();
      this.byTask.set(taskId, s);
    }
    s.add(node);
  }

  holders(taskId: string): ReadonlySet<string> | undefined {
    return this.byTask.get(taskId);
  }

  get taskCount(): number {
    return this.byTask.size;
  }
}

// The pod's layers, each task once (images share base layers; a shared layer
// is pulled once, so it counts once).
export function podLayers(images: readonly string[], source: ImageLayerSource): Layer[] {
  const seen = new Set<string>();
  const out: Layer[] = [];
  for (const image of images) {
    for (const l of source.layers(image) ?? []) {
      if (seen.has(l.taskId)) continue;
      seen.add(l.taskId);
      out.push(l);
    }
  }
  return out;
}

// A size the manifest did not give (or gave nonsense for) still makes the
// layer count, a little: holding it is better than not.
const weight = (size: number): number => (Number.isFinite(size) && size > 0 ? size : 1);

// Score = share of the pod's layer bytes the node already holds, on 0..10.
// Any holding scores at least 1 so that "holds some" always ranks above
// "holds none" (floor alone would put 5% and 0% both at 0); only a node
// holding every layer scores 10.
export function scoreNodes(layers: readonly Layer[], nodeNames: readonly string[], index: LayerIndex): HostPriorityList {
  let total = 0;
  const held = new Map<string, number>();
  for (const l of layers) {
    const w = weight(l.size);
    total += w;
    const hs = index.holders(l.taskId);
    if (!hs) continue;
    // Walk the smaller side: a base layer every node holds, asked about 10 nodes.
    if (hs.size <= nodeNames.length) for (const node of hs) held.set(node, (held.get(node) ?? 0) + w);
    else for (const node of nodeNames) if (hs.has(node)) held.set(node, (held.get(node) ?? 0) + w);
  }
  const out: HostPriorityList = new Array(nodeNames.length);
  for (let i = 0; i < nodeNames.length; i++) {
    const host = nodeNames[i]!;
    const bytes = held.get(host) ?? 0;
    let score = MIN_EXTENDER_PRIORITY;
    if (bytes > 0 && total > 0) score = Math.max(1, Math.min(MAX_EXTENDER_PRIORITY, Math.floor((MAX_EXTENDER_PRIORITY * bytes) / total)));
    out[i] = { Host: host, Score: score };
  }
  return out;
}

// A prioritize call end to end, once the body is parsed.
export function prioritize(args: ParsedExtenderArgs, source: ImageLayerSource, index: LayerIndex): HostPriorityList {
  return scoreNodes(podLayers(args.images, source), args.nodeNames, index);
}

// What the manager's extender routes read: the current index and image cache
// (swapped whole by whoever builds them, so a request sees one consistent
// pair), and where they report the images pods asked about, so that a
// background refresh can resolve and track them. wanted() must not block.
export interface LocalitySource {
  current(): { images: ImageLayerSource; index: LayerIndex };
  wanted(images: readonly string[]): void;
}

// Knows nothing: every node scores 0 (the extender is then neutral).
export const EMPTY_LOCALITY: LocalitySource = {
  current: () => ({ images: { layers: () => undefined }, index: new NodeLayerIndex() }),
  wanted: () => undefined,
};
