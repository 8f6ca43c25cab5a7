// The scheduler extender end to end: a manager with extender.locality on, a
// cluster registered to it, a real docker-registry. Once peer-0 pulled an
// image's layers through its mirror, a prioritize call for a pod of that
// image scores peer-0 above peer-1 (which holds nothing); filter keeps both;
// GET /api/v1/images/layers names peer-0 for every layer.
import { createServer } from "node:http";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { startCluster } from "../helpers/cluster.js";
import { prioritizeUntil, startManager, waitForSchedulers } from "../helpers/manager.js";
import { pullBlobsThrough, registryWithImage } from "../helpers/mirror-setup.js";
import { haveRegistry } from "../helpers/registry.js";
import { tempDir } from "../helpers/store.js";

// Over the daemons' minP2pSize (1 MiB): smaller blobs go straight to the registry, no task.
const MiB = 1024 * 1024;

describe("kubernetes scheduler extender", { timeout: 120_000 }, async () => {
  const have = await haveRegistry();
  test("a node holding the pod's layers scores above one that does not", { skip: have ? false : "docker-registry not installed" }, async (t) => {
    const dir = tempDir(t, "dfm-ext-");
    const { registry, image, ref } = await registryWithImage(t, dir, { layers: [3 * MiB, 2 * MiB], seed: "extender" });
    // A registry no daemon pulled from, named by the pod: it must see no request.
    let strangerRequests = 0;
    const stranger = createServer((_req, res) => {
      strangerRequests++;
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => stranger.listen(0, "127.0.0.1", r));
    t.after(() => stranger.close());
    const addr = stranger.address();
    const strangerRef = `127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/evil/app:1`;
    // Locality is on by default.
    const manager = await startManager({ t, env: { DAMSELFLY_MANAGER_EXTENDER_REFRESH_INTERVAL: "1s" } });
    const root = await manager.signin();
    const cluster = await startCluster({ peers: 2, seed: false, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"] });
    await waitForSchedulers(manager, root);

    const [a, b] = cluster.peers as [(typeof cluster.peers)[0], (typeof cluster.peers)[0]];
    await pullBlobsThrough(a.proxyUrl, registry, image);

    const args = {
      Pod: {
        metadata: { name: "web", namespace: "default" },
        spec: { containers: [{ name: "web", image: ref }], initContainers: [{ name: "init", image: strangerRef }] },
      },
      Nodes: null,
      NodeNames: [b.name, a.name, "node-unknown"],
    };
    const filter = await manager.api("POST", "/extender/v1/filter", { body: args });
    assert.equal(filter.status, 200);
    assert.deepEqual(filter.body, { Nodes: null, NodeNames: args.NodeNames, FailedNodes: {}, FailedAndUnresolvableNodes: {}, Error: "" });

    const scores = await prioritizeUntil(manager, args, a.name, 10);
    assert.deepEqual(scores, [
      { Host: b.name, Score: 0 },
      { Host: a.name, Score: 10 },
      { Host: "node-unknown", Score: 0 },
    ]);

    // The manager API's view: which nodes hold which layers of the image.
    const q = `/api/v1/images/layers?image=${encodeURIComponent(ref)}&platform=linux/amd64`;
    const held = await manager.api("GET", q, { token: root });
    assert.equal(held.status, 200, JSON.stringify(held.body));
    assert.deepEqual(
      held.body.layers.map((l: { digest: string; size: number; nodes: string[] }) => [l.digest, l.size, l.nodes]),
      image.layers.map((l) => [l.digest, l.size, [a.name]]),
    );
    assert.equal((await manager.api("GET", q)).status, 401);
    const qs = `/api/v1/images/layers?image=${encodeURIComponent(strangerRef)}&platform=linux/amd64`;
    const refused = await manager.api("GET", qs, { token: root });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.code, "DF_ERR_INVALID_REQUEST");
    // Asked about by filter and prioritize, in the same rounds that resolved
    // the pulled image, and by the API: never reached.
    assert.equal(strangerRequests, 0);
    assert.equal((await manager.api("GET", "/api/v1/images/layers?image=Not%20A%20Ref", { token: root })).status, 400);
  });
});
