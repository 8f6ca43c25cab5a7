// Secrets in a download's query string (an Azure SAS `sig`, a token) are
// never written to task.json nor shown by `cache list`; the origin still
// gets the signed URL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { taskId } from "../../src/common/task-id.js";
import { startCluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { runDamselfly } from "../helpers/procs.js";
import { sha256File, taskDir, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SAS = "sv=2022-11-02&sr=b&sp=r&se=2099-01-01T00%3A00%3A00Z&sig=SECRETSIGNATURE%2Bxyz%3D";

test("query-string secrets stay out of task.json and cache list", { timeout: 60_000 }, async (t) => {
  const origin = await startOrigin();
  t.after(() => origin.close());
  const data = origin.addRandomFile("/container/blob.bin", 3 * MiB, "sas");
  const url = `${origin.url("/container/blob.bin")}?${SAS}&token=SECRETTOKEN&part=1`;
  const cluster = await startCluster({ peers: 1, seed: false, t });
  const peer = cluster.peers[0]!;
  const out = join(tempDir(t, "damselfly-sas-"), "blob.bin");
  const r = await peer.get([url, "-O", out, "--no-progress"], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await sha256File(out), sha256Hex(data));
  assert.match(String(origin.requests.at(-1)?.url), /sig=SECRETSIGNATURE/, "the origin got the signed URL");

  const dir = taskDir(peer.dataDir, taskId({ url }));
  const meta = readFileSync(join(dir, "task.json"), "utf8");
  const list = await runDamselfly(["cache", "list", "--json", "--daemon", peer.apiUrl], { timeoutMs: 30_000 });
  assert.equal(list.code, 0, list.stderr);
  for (const [what, text] of [
    ["task.json", meta],
    ["cache list", list.stdout.toString()],
  ] as const) {
    assert.doesNotMatch(text, /SECRET/, `${what} shows a secret: ${text}`);
    assert.match(text, /sig=REDACTED/, `${what} should say the URL was signed: ${text}`);
    assert.match(text, /part=1/, `${what} keeps the other parameters: ${text}`);
  }
});
