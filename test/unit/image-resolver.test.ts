// Image resolution for preheat jobs against a fake registry that insists on
// Docker's bearer-token protocol, and image references for `damselfly preheat`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { imageManifestUrl } from "../../src/cli/preheat.js";
import { resolveImage } from "../../src/manager/jobs/image-resolver.js";

const d = (c: string) => "sha256:" + c.repeat(64);

test("bearer challenge: the token is fetched with the caller's Basic credentials; index -> platform -> layers", async (t) => {
  const seen: string[] = [];
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, "http://x");
    seen.push(`${req.method} ${url.pathname} ${req.headers.authorization ?? "-"}`);
    if (url.pathname === "/token") {
      assert.equal(url.searchParams.get("scope"), "repository:team/app:pull");
      assert.equal(url.searchParams.get("service"), "reg");
      if (req.headers.authorization !== "Basic dTpw") return void res.writeHead(401).end();
      return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "tok-1" }));
    }
    if (req.headers.authorization !== "Bearer tok-1") {
      const realm = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/token`;
      return void res.writeHead(401, { "www-authenticate": `Bearer realm="${realm}",service="reg",scope="repository:team/app:pull"` }).end();
    }
    assert.match(String(req.headers.accept), /application\/vnd\.oci\.image\.index\.v1\+json/);
    if (url.pathname === "/v2/team/app/manifests/v1") {
      return void res.writeHead(200, { "content-type": "application/vnd.docker.distribution.manifest.list.v2+json" }).end(
        JSON.stringify({
          schemaVersion: 2,
          manifests: [
            { digest: d("a"), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
            { digest: d("b"), platform: { os: "linux", architecture: "amd64" } },
          ],
        }),
      );
    }
    if (url.pathname === `/v2/team/app/manifests/${d("b")}`) {
      return void res.writeHead(200, { "content-type": "application/vnd.docker.distribution.manifest.v2+json" }).end(
        JSON.stringify({
          schemaVersion: 2,
          config: { digest: d("c"), size: 10 },
          layers: [
            { digest: d("1"), size: 100 },
            { digest: d("2"), size: 200 },
          ],
        }),
      );
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  t.after(() => srv.close());
  const base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  const img = await resolveImage(`${base}/v2/team/app/manifests/v1`, { Authorization: "Basic dTpw" }, "linux/amd64");
  assert.deepEqual(img.blobs, [
    { url: `${base}/v2/team/app/blobs/${d("1")}`, digest: d("1"), size: 100 },
    { url: `${base}/v2/team/app/blobs/${d("2")}`, digest: d("2"), size: 200 },
  ]);
  assert.deepEqual(img.headers, { authorization: "Bearer tok-1" }, "the blobs are fetched with the registry token, not the password");
  assert.ok(seen.includes("GET /token Basic dTpw"));
  await assert.rejects(
    resolveImage(`${base}/v2/team/app/manifests/v1`, { Authorization: "Basic dTpw" }, "linux/s390x"),
    /no linux\/s390x manifest \(it has: linux\/arm64\/v8, linux\/amd64\)/,
  );
  await assert.rejects(resolveImage(`${base}/v2/team/app/manifests/v1`, { Authorization: "Basic d3Jvbmc=" }, "linux/amd64"), /token endpoint answered 401/);
  await assert.rejects(resolveImage(`${base}/v2/team/app/manifests/v1`, {}, "linux"), /expected os\/arch/);
});

test("image references become manifest URLs", () => {
  assert.equal(imageManifestUrl("alpine"), "https://registry-1.docker.io/v2/library/alpine/manifests/latest");
  assert.equal(imageManifestUrl("bitnami/redis:7.2"), "https://registry-1.docker.io/v2/bitnami/redis/manifests/7.2");
  assert.equal(imageManifestUrl("docker.io/library/nginx:1"), "https://registry-1.docker.io/v2/library/nginx/manifests/1");
  assert.equal(imageManifestUrl("127.0.0.1:5000/test/app:v1"), "http://127.0.0.1:5000/v2/test/app/manifests/v1");
  assert.equal(imageManifestUrl("localhost:5000/app"), "http://localhost:5000/v2/app/manifests/latest");
  assert.equal(imageManifestUrl(`quay.io/org/app@${d("e")}`), `https://quay.io/v2/org/app/manifests/${d("e")}`);
  assert.throws(() => imageManifestUrl("Not A Ref"), /not an image reference/);
});
