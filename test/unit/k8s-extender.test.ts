// The Kubernetes scheduler extender: ExtenderArgs as kube-scheduler sends them
// (Go field names, no json tags), scored by the bytes of the pod's layers a
// node already holds; filter keeps every node; hostile bodies are refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DamselflyError } from "../../src/common/errors.js";
import { NodeLayerIndex, prioritize, type Layer } from "../../src/manager/extender/locality.js";
import { EXTENDER_LIMITS, filterAll, parseExtenderArgs } from "../../src/manager/extender/protocol.js";

const layer = (c: string, size: number): Layer => ({ digest: "sha256:" + c.repeat(64), size, taskId: "t-" + c });

// nginx: a large base layer and a small app layer; busybox: one layer.
const IMAGES: Record<string, Layer[]> = {
  "registry.local/library/nginx:1.27": [layer("a", 30_000_000), layer("b", 2_000_000)],
  "registry.local/library/busybox:1.36": [layer("c", 1_000_000)],
};
const source = { layers: (image: string) => IMAGES[image] };

const pod = {
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: "web-0", namespace: "default", uid: "1b4e28ba-2fa1-11d2-883f-0016d3cca427" },
  spec: {
    initContainers: [{ name: "init", image: "registry.local/library/busybox:1.36" }],
    containers: [{ name: "web", image: "registry.local/library/nginx:1.27", ports: [{ containerPort: 80 }] }],
  },
};

// nodeCacheCapable: true -> NodeNames.
const NAMES_BODY = JSON.stringify({ Pod: pod, Nodes: null, NodeNames: ["node-full", "node-base", "node-empty", "node-app"] });
// nodeCacheCapable: false -> a whole v1.NodeList.
const NODES_BODY = JSON.stringify({
  Pod: pod,
  Nodes: {
    kind: "NodeList",
    apiVersion: "v1",
    metadata: {},
    items: ["node-empty", "node-full"].map((name) => ({ metadata: { name, labels: { "kubernetes.io/hostname": name } }, status: {} })),
  },
  NodeNames: null,
});

const index = NodeLayerIndex.fromNodes([
  ["node-full", ["t-a", "t-b", "t-c"]],
  ["node-base", ["t-a", "t-unrelated"]],
  ["node-app", ["t-b"]],
  ["node-other", ["t-a", "t-b", "t-c"]],
]);

test("prioritize: HostPriorityList in the order asked, a node holding the pod's layers above one that does not", () => {
  const args = parseExtenderArgs(JSON.parse(NAMES_BODY));
  assert.equal(args.pod, "default/web-0");
  assert.deepEqual(args.images, ["registry.local/library/busybox:1.36", "registry.local/library/nginx:1.27"]);
  const out = prioritize(args, source, index);
  // Exactly the Go shape: [{Host, Score}], scores within 0..MaxExtenderPriority.
  assert.deepEqual(JSON.parse(JSON.stringify(out)), [
    { Host: "node-full", Score: 10 },
    { Host: "node-base", Score: 9 }, // 30 of 33 MB
    { Host: "node-empty", Score: 0 },
    { Host: "node-app", Score: 1 }, // 2 of 33 MB: floor gives 0, any holding scores at least 1
  ]);
});

test("prioritize: a v1.NodeList body, keys matched case-insensitively as Go's decoder does", () => {
  const out = prioritize(parseExtenderArgs(JSON.parse(NODES_BODY)), source, index);
  assert.deepEqual(out, [
    { Host: "node-empty", Score: 0 },
    { Host: "node-full", Score: 10 },
  ]);
  const lower = parseExtenderArgs({ pod, nodenames: ["node-app"] });
  assert.deepEqual(prioritize(lower, source, index), [{ Host: "node-app", Score: 1 }]);
});

test("prioritize: unknown images and shared layers", () => {
  const unknown = parseExtenderArgs({ Pod: { spec: { containers: [{ image: "elsewhere/x:1" }] } }, NodeNames: ["node-full"] });
  assert.deepEqual(prioritize(unknown, source, index), [{ Host: "node-full", Score: 0 }]);
  // The same layer in two images counts once: holding it is the whole pod.
  const shared = { layers: (i: string) => (i === "x" || i === "y" ? [layer("a", 10)] : undefined) };
  const both = parseExtenderArgs({ Pod: { spec: { containers: [{ image: "x" }, { image: "y" }] } }, NodeNames: ["node-base"] });
  assert.deepEqual(prioritize(both, shared, index), [{ Host: "node-base", Score: 10 }]);
});

test("filter never drops a node, whatever it holds, and echoes the shape it was sent", () => {
  const names = filterAll(parseExtenderArgs(JSON.parse(NAMES_BODY)));
  assert.deepEqual(JSON.parse(JSON.stringify(names)), {
    Nodes: null,
    NodeNames: ["node-full", "node-base", "node-empty", "node-app"],
    FailedNodes: {},
    FailedAndUnresolvableNodes: {},
    Error: "",
  });
  const sent = JSON.parse(NODES_BODY);
  const nodes = filterAll(parseExtenderArgs(sent));
  assert.deepEqual(nodes.Nodes, sent.Nodes);
  assert.equal(nodes.NodeNames, null);
});

test("hostile bodies: DF_ERR_INVALID_REQUEST, never a crash or an unbounded walk", () => {
  const cases: unknown[] = [
    null,
    [],
    "x",
    {},
    { Pod: pod },
    { Pod: "x", NodeNames: [] },
    { Pod: { spec: null }, NodeNames: [] },
    { Pod: pod, NodeNames: "node-a" },
    { Pod: pod, NodeNames: [1] },
    { Pod: pod, NodeNames: [""] },
    { Pod: pod, NodeNames: ["n".repeat(EXTENDER_LIMITS.maxNodeNameLength + 1)] },
    { Pod: pod, NodeNames: Array.from({ length: EXTENDER_LIMITS.maxNodes + 1 }, (_, i) => `n${i}`) },
    { Pod: pod, Nodes: { items: Array.from({ length: EXTENDER_LIMITS.maxNodes + 1 }, (_, i) => ({ metadata: { name: `n${i}` } })) } },
    { Pod: pod, Nodes: { items: [{ metadata: {} }] } },
    { Pod: pod, Nodes: { items: "x" } },
    { Pod: { spec: { containers: "x" } }, NodeNames: [] },
    { Pod: { spec: { containers: [{ image: 5 }] } }, NodeNames: [] },
    { Pod: { spec: { containers: [{ image: "i".repeat(EXTENDER_LIMITS.maxImageRefLength + 1) }] } }, NodeNames: [] },
    { Pod: { spec: { containers: Array.from({ length: EXTENDER_LIMITS.maxContainers + 1 }, () => ({ image: "a" })) } }, NodeNames: [] },
  ];
  for (const c of cases) {
    assert.throws(
      () => parseExtenderArgs(c),
      (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_INVALID_REQUEST",
      JSON.stringify(c).slice(0, 80),
    );
  }
  // At the limits exactly: accepted.
  const max = parseExtenderArgs({ Pod: pod, NodeNames: Array.from({ length: EXTENDER_LIMITS.maxNodes }, (_, i) => `n${i}`) });
  assert.equal(max.nodeNames.length, EXTENDER_LIMITS.maxNodes);
});
