// The manager's extender routes over HTTP (Fastify inject): the documented
// ExtenderArgs payload in, HostPriorityList / ExtenderFilterResult out, the
// locality source told which images pods want, malformed and oversized
// bodies refused with a DF_ERR_* code.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { createLogger } from "../../src/common/logger.js";
import { NodeLayerIndex, type Layer, type LocalitySource } from "../../src/manager/extender/locality.js";
import { EXTENDER_LIMITS } from "../../src/manager/extender/protocol.js";
import { installErrorHandlers } from "../../src/manager/http/errors.js";
import { extenderRoutes } from "../../src/manager/routes/extender.js";

const layer = (c: string, size: number): Layer => ({ digest: `sha256:${c.repeat(64)}`, size, taskId: `t-${c}` });
const IMAGE = "registry.local/library/nginx:1.27";
const wanted: string[][] = [];
const locality: LocalitySource = {
  current: () => ({
    images: { layers: (i) => (i === IMAGE ? [layer("a", 3_000), layer("b", 1_000)] : undefined) },
    index: NodeLayerIndex.fromNodes([
      ["node-a", ["t-a", "t-b"]],
      ["node-b", ["t-b"]],
    ]),
  }),
  wanted: (images) => void wanted.push([...images]),
};
const pod = { metadata: { name: "web", namespace: "default" }, spec: { containers: [{ name: "web", image: IMAGE }] } };

let app: FastifyInstance;
before(async () => {
  app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  installErrorHandlers(app, createLogger("fatal", join(tmpdir(), "dfm-extender-test.log")));
  await app.register(extenderRoutes(locality));
  await app.ready();
});
after(async () => app?.close());

const post = (verb: string, payload: string) =>
  app.inject({ method: "POST", url: `/extender/v1/${verb}`, headers: { "content-type": "application/json" }, payload });

test("POST /extender/v1/prioritize: the node holding the pod's layers scores above the others", async () => {
  wanted.length = 0;
  const res = await post("prioritize", JSON.stringify({ Pod: pod, Nodes: null, NodeNames: ["node-c", "node-b", "node-a"] }));
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), [
    { Host: "node-c", Score: 0 },
    { Host: "node-b", Score: 2 },
    { Host: "node-a", Score: 10 },
  ]);
  assert.deepEqual(wanted, [[IMAGE]]);
});

test("POST /extender/v1/filter keeps every node and tells the source what the pod wants", async () => {
  wanted.length = 0;
  const res = await post("filter", JSON.stringify({ Pod: pod, NodeNames: ["node-c", "node-a"] }));
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { Nodes: null, NodeNames: ["node-c", "node-a"], FailedNodes: {}, FailedAndUnresolvableNodes: {}, Error: "" });
  assert.deepEqual(wanted, [[IMAGE]]);
});

test("malformed and oversized bodies: 400 / 413 with a DF_ERR code, the source never told", async () => {
  wanted.length = 0;
  for (const body of ["[]", "{}", "not json", JSON.stringify({ Pod: pod })]) {
    const res = await post("prioritize", body);
    assert.equal(res.statusCode, 400, body);
    assert.equal(res.json().code, "DF_ERR_INVALID_REQUEST");
  }
  // Over the route's limit (not the app's 1 MiB): refused before parsing.
  const big = JSON.stringify({ Pod: pod, NodeNames: ["x".repeat(EXTENDER_LIMITS.maxBodyBytes)] });
  const res = await post("filter", big);
  assert.equal(res.statusCode, 413);
  // A NodeNames body between the app's 1 MiB and the route's limit is read.
  const many = Array.from({ length: EXTENDER_LIMITS.maxNodes }, (_, i) => `node-${i}-${"n".repeat(200)}`);
  const ok = await post("prioritize", JSON.stringify({ Pod: pod, NodeNames: many }));
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().length, EXTENDER_LIMITS.maxNodes);
  assert.equal(wanted.length, 1);
});
