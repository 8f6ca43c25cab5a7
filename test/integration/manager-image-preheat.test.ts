// Image preheat against a real docker-registry (private, Basic auth): the
// job resolves an image index to the linux/amd64 manifest and its layers,
// the seed peer fetches each layer once under the task IDs the registry
// mirror uses, and pulling the layers through a peer's mirror afterwards
// costs the registry no layer bytes.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { request } from "undici";
import { blobDownload, downloadTaskId } from "../../src/protocol/index.js";
import { startCluster } from "../helpers/cluster.js";
import { startManager, waitForJob } from "../helpers/manager.js";
import { registryWithImage } from "../helpers/mirror-setup.js";
import { MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST } from "../helpers/oci-image.js";
import { haveRegistry } from "../helpers/registry.js";
import { storedMeta, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const basic = (u: string, p: string) => "Basic " + Buffer.from(`${u}:${p}`).toString("base64");

describe("image preheat", { timeout: 180_000 }, async () => {
  const have = await haveRegistry();
  test("index -> linux/amd64 -> layers into the seed peer; a later pull through the mirror costs the registry nothing", {
    skip: have ? false : "docker-registry not installed",
  }, async (t) => {
    const dir = tempDir(t, "dfm-img-");
    const auth = { user: "harbor", password: "pw-Preheat-Secret-7" };
    const { registry, image } = await registryWithImage(t, dir, { layers: [3 * MiB, 2 * MiB], auth, seed: "preheat" });
    // An index naming the pushed manifest for linux/amd64 (and a decoy
    // platform), as multi-arch images are published.
    const manifest = readFileSync(join(image.layoutDir, "blobs", "sha256", image.manifestDigest.slice(7)));
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_INDEX,
      manifests: [
        { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: image.manifestDigest, size: manifest.length, platform: { os: "linux", architecture: "s390x" } },
        { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: image.manifestDigest, size: manifest.length, platform: { os: "linux", architecture: "amd64" } },
      ],
    });
    const put = await request(`${registry.url}/v2/test/app/manifests/multi`, {
      method: "PUT",
      headers: { "content-type": MEDIA_TYPE_OCI_INDEX, authorization: basic(auth.user, auth.password) },
      body: index,
    });
    await put.body.dump();
    assert.equal(put.statusCode, 201);
    await registry.accessLog();
    registry.resetAccessLog();

    const manager = await startManager({ t });
    const root = await manager.signin();
    const cluster = await startCluster({ peers: 1, t, schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"] });
    const pat = (
      await manager.api("POST", "/api/v1/personal-access-tokens", {
        token: root,
        body: { name: "harbor", scopes: ["job"], expired_at: new Date(Date.now() + 600_000).toISOString() },
      })
    ).body.token;
    const deadline = Date.now() + 10_000;
    while ((await manager.api("GET", "/api/v1/schedulers", { token: root })).body.length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));

    // Harbor's request, field for field.
    const created = await manager.api("POST", "/oapi/v1/jobs", {
      token: pat,
      body: {
        type: "preheat",
        args: {
          type: "image",
          url: `${registry.url}/v2/test/app/manifests/multi`,
          tag: "",
          filtered_query_params: "",
          headers: { Authorization: basic(auth.user, auth.password) },
          scope: "single_seed_peer",
          concurrent_count: 0,
          timeout: 0,
          platform: "linux/amd64",
        },
        scheduler_cluster_ids: [1],
      },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const job = await waitForJob(manager, pat, created.body.id, 90_000);
    assert.equal(job.state, "SUCCESS", JSON.stringify(job.result));
    const ok = job.result.job_states[0].results[0].success_tasks as { url: string; hostname: string }[];
    assert.deepEqual(ok.map((s) => s.url).sort(), image.layers.map((l) => `${registry.url}/v2/test/app/blobs/${l.digest}`).sort());
    assert.ok(ok.every((s) => s.hostname === "seed"));
    await registry.accessLog();
    for (const l of image.layers) {
      assert.equal(registry.blobBytesSent(l.digest), l.size, `layer ${l.digest} left the registry once`);
      // The seed holds it under the mirror's task ID (the digest and the registry, whatever the repository).
      const id = downloadTaskId(blobDownload({ url: `${registry.url}/v2/other/repo/blobs/${l.digest}`, headers: {}, digest: l.digest }));
      assert.ok(storedMeta(cluster.seed!.dataDir, id)?.done, `seed holds ${l.digest} as task ${id}`);
    }
    // A wrong platform is a clear failure.
    const wrong = await manager.api("POST", "/oapi/v1/jobs", {
      token: pat,
      body: {
        type: "preheat",
        args: {
          type: "image",
          url: `${registry.url}/v2/test/app/manifests/multi`,
          headers: { Authorization: basic(auth.user, auth.password) },
          platform: "windows/arm64",
        },
      },
    });
    const failed = await waitForJob(manager, pat, wrong.body.id);
    assert.equal(failed.state, "FAILURE");
    assert.match(failed.result.job_states[0].error, /no windows\/arm64 manifest/);

    // The peer's mirror now serves every layer from the swarm.
    registry.resetAccessLog();
    const p = cluster.peers[0]!;
    for (const l of image.layers) {
      const r = await request(`${p.proxyUrl}/v2/test/app/blobs/${l.digest}?ns=${encodeURIComponent(registry.hostPort)}`, {
        headers: { authorization: basic(auth.user, auth.password) },
      });
      const body = Buffer.from(await r.body.arrayBuffer());
      assert.equal(r.statusCode, 200);
      assert.equal("sha256:" + createHash("sha256").update(body).digest("hex"), l.digest);
    }
    await registry.accessLog();
    for (const l of image.layers) assert.equal(registry.blobBytesSent(l.digest), 0, `layer ${l.digest} fetched from the registry again`);
  });
});
