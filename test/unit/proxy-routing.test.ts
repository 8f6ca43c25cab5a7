import { test } from "node:test";
import assert from "node:assert/strict";
import { registryOrigin, routeMirrorRequest } from "../../src/peer/proxy/registry-route.js";
import { parseRange, resolveRange } from "../../src/peer/proxy/range.js";
import { upstreamRequestHeaders, NOT_SHARED_WITH_ORIGIN } from "../../src/peer/proxy/headers.js";

const o = { defaultRegistry: "https://index.docker.io", plainHttpRegistries: ["reg.lan:5000"] };
const BLOB = "sha256:" + "ab".repeat(32);

test("registry origin: scheme rules and the docker.io alias", () => {
  assert.equal(registryOrigin("docker.io", []), "https://registry-1.docker.io");
  assert.equal(registryOrigin("https://index.docker.io", []), "https://registry-1.docker.io");
  assert.equal(registryOrigin("quay.io", []), "https://quay.io");
  assert.equal(registryOrigin("127.0.0.1:5000", []), "http://127.0.0.1:5000");
  assert.equal(registryOrigin("localhost:5000", []), "http://localhost:5000");
  assert.equal(registryOrigin("reg.lan:5000", ["reg.lan:5000"]), "http://reg.lan:5000");
  assert.equal(registryOrigin("https://127.0.0.1:5443", []), "https://127.0.0.1:5443");
  assert.throws(() => registryOrigin("https://user:pw@reg.io", []), /DF_ERR_INVALID_REQUEST|invalid registry/);
  assert.throws(() => registryOrigin("reg.io/path", []), /invalid registry/);
  assert.throws(() => registryOrigin("not a host", []), /invalid registry/);
});

test("mirror routing: header, then ns=, then a registry path prefix, then the default", () => {
  const h = routeMirrorRequest(`/v2/a/b/blobs/${BLOB}?ns=quay.io`, "http://127.0.0.1:5000", o);
  assert.equal(h.origin, "http://127.0.0.1:5000");
  assert.equal(h.pathAndQuery, `/v2/a/b/blobs/${BLOB}`);
  assert.deepEqual(h.blob, { repository: "a/b", digest: BLOB });

  const ns = routeMirrorRequest("/v2/library/alpine/manifests/3.20?ns=docker.io&x=1", undefined, o);
  assert.equal(ns.origin, "https://registry-1.docker.io");
  assert.equal(ns.pathAndQuery, "/v2/library/alpine/manifests/3.20?x=1");
  assert.equal(ns.blob, undefined);

  const prefixed = routeMirrorRequest(`/v2/quay.io/org/app/blobs/${BLOB}`, undefined, o);
  assert.equal(prefixed.origin, "https://quay.io");
  assert.equal(prefixed.pathAndQuery, `/v2/org/app/blobs/${BLOB}`);
  assert.equal(prefixed.blob?.repository, "org/app");

  // A one-component repository whose name has a dot is not a registry.
  const dotted = routeMirrorRequest("/v2/my.app/manifests/latest", undefined, o);
  assert.equal(dotted.origin, "https://registry-1.docker.io");
  assert.equal(dotted.pathAndQuery, "/v2/my.app/manifests/latest");

  assert.equal(routeMirrorRequest("/v2/", undefined, o).pathAndQuery, "/v2/");
  assert.equal(routeMirrorRequest(`/v2/x/blobs/sha256:short`, undefined, o).blob, undefined);
});

test("range parsing: the three single-range forms, and what is left to the upstream", () => {
  const size = 1000;
  const r = (h: string) => {
    const p = parseRange(h);
    assert.ok(p.ok && p.spec);
    return resolveRange(p.spec, size);
  };
  assert.deepEqual(r("bytes=0-99"), { start: 0, end: 100 });
  assert.deepEqual(r("bytes=100-"), { start: 100, end: 1000 });
  assert.deepEqual(r("bytes=-100"), { start: 900, end: 1000 });
  assert.deepEqual(r("bytes=-5000"), { start: 0, end: 1000 });
  assert.deepEqual(r("bytes=990-5000"), { start: 990, end: 1000 });
  assert.equal(r("bytes=1000-"), undefined);
  assert.equal(r("bytes=-0"), undefined);
  assert.deepEqual(parseRange(undefined), { ok: true, spec: undefined });
  for (const bad of ["bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=-", "bytes=a-b"]) assert.equal(parseRange(bad).ok, false, bad);
});

test("upstream headers: credentials travel, hop-by-hop, routing and range headers do not", () => {
  const h = upstreamRequestHeaders(
    {
      host: "127.0.0.1:65001",
      authorization: "Bearer t",
      connection: "keep-alive, x-hop",
      "x-hop": "1",
      "proxy-authorization": "Basic x",
      "x-damselfly-registry": "quay.io",
      range: "bytes=0-1",
      "user-agent": "containerd/1.6",
    },
    NOT_SHARED_WITH_ORIGIN,
  );
  assert.deepEqual(h, { authorization: "Bearer t" });
});
