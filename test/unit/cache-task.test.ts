// Imported tasks' identity (protocol/cache-task.ts): the ID is the content's
// sha256 under the damselfly-cache pseudo-URL, a claimed digest is believed
// only when the ID is made of it, and a daemon never lets a download of one
// go back to source.
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { taskId } from "../../src/common/task-id.js";
import { CACHE_URL, cacheDigest, cacheDownload, cacheTaskId, DownloadSchema, isCacheDigestOf, isCacheDownloadOf } from "../../src/protocol/index.js";
import { validateDownload } from "../../src/peer/api/download-task.js";

const d1 = `sha256:${"a1".repeat(32)}`;
const d2 = `sha256:${"b2".repeat(32)}`;

test("the ID is the digest-keyed task ID of the content under the pseudo-URL; only its own digest matches it", () => {
  const id = cacheTaskId(d1);
  assert.equal(id, taskId({ url: CACHE_URL, digest: d1 }));
  assert.notEqual(id, cacheTaskId(d2));
  // Not an OCI blob of any registry: another registry, another task.
  assert.notEqual(id, taskId({ url: "https://registry.example/v2/x/blobs/y", digest: d1 }));
  assert.equal(isCacheDigestOf(id, d1), true);
  assert.equal(isCacheDigestOf(id, d2), false);
  assert.equal(isCacheDigestOf(id, d1.toUpperCase()), false);
  assert.equal(isCacheDigestOf(id, ""), false);
  assert.equal(isCacheDownloadOf(cacheDownload(d1), id), true);
  assert.equal(isCacheDownloadOf(create(DownloadSchema, { url: "http://o/x", digest: d1, digestTaskId: true }), id), false);
  assert.equal(isCacheDownloadOf(create(DownloadSchema, { url: CACHE_URL, digest: d1, digestTaskId: true, tag: "t" }), id), false);
});

test("only sha256 keys an imported task", () => {
  assert.equal(cacheDigest(d1.toUpperCase().replace("SHA256", "sha256")), d1);
  assert.throws(() => cacheDigest(`sha512:${"a".repeat(128)}`), /DF_ERR_INVALID_DIGEST|sha256/);
  assert.throws(() => cacheDigest("sha256:abc"), /digest/);
});

test("a daemon rebuilds any damselfly-cache download: no origin, no headers, digest-keyed", () => {
  const asked = create(DownloadSchema, { url: CACHE_URL, digest: d1, digestTaskId: false, disableBackToSource: false, headers: { authorization: "x" } });
  const d = validateDownload(asked);
  assert.equal(d.disableBackToSource, true);
  assert.equal(d.digestTaskId, true);
  assert.deepEqual(d.headers, {});
  assert.throws(() => validateDownload(create(DownloadSchema, { url: CACHE_URL, digest: "" })), /digest/);
});
