// Digest failures leave nothing behind: a task whose content did not match
// its whole-file digest (an OCI blob's own, or the one a requester named
// with --digest) is removed from the store with its files: never served,
// never announced, fetched afresh next time.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { DownloadSchema, downloadTaskId } from "../../src/protocol/index.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { startPeer } from "../helpers/inproc-peers.js";
import { pollUntil, taskDir } from "../helpers/store.js";

const WRONG = `sha256:${"0".repeat(64)}`;

for (const kind of ["--digest on a URL task", "an OCI blob's own digest"] as const) {
  test(`content that does not match ${kind} is discarded`, async (t) => {
    const origin = await startOrigin();
    t.after(() => origin.close());
    const data = origin.addRandomFile("/d/blob.bin", 3 * 1024 * 1024 + 5, kind);
    const url = origin.url("/d/blob.bin");
    const peer = await startPeer(t, { name: "discard" });
    const d = create(DownloadSchema, { url, digest: WRONG, digestTaskId: kind !== "--digest on a URL task" });
    const id = downloadTaskId(d);
    await assert.rejects(peer.download(d), /DF_ERR_DIGEST_MISMATCH|digest mismatch/);
    await pollUntil(() => peer.storage.get(id) === undefined && !existsSync(taskDir(peer.dataDir, id)), "the task and its files to be removed", 10_000);
    assert.equal(peer.tasks.isActive(id), false);
    // The same content with the right digest is fetched afresh and kept.
    const ok = create(DownloadSchema, { url, digest: `sha256:${sha256Hex(data)}`, digestTaskId: kind !== "--digest on a URL task" });
    const before = origin.requestCount("/d/blob.bin");
    const task = await peer.download(ok);
    assert.ok(task.done);
    assert.ok(origin.requestCount("/d/blob.bin") > before);
  });
}
