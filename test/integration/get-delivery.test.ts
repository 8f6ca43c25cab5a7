// How `get` puts a finished task at its output path. The daemon never writes
// outside its store: it names its verified data file and the client links
// (or copies) it with its own permissions; when the store is out of the
// client's reach (another user's private store), the bytes are streamed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { taskId } from "../../src/common/task-id.js";
import { startCluster } from "../helpers/cluster.js";
import { runDamselfly } from "../helpers/procs.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { sha256File, taskDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const NOBODY = 65534;

test("get delivers by hard link for its own user and by stream for a user who cannot read the store", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "damselfly-delivery-"));
  chmodSync(root, 0o755);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const origin = await startOrigin();
  t.after(() => origin.close());
  const data = origin.addRandomFile("/delivery/blob.bin", 20 * MiB + 7, "delivery");
  const url = origin.url("/delivery/blob.bin");
  // A private store: only the daemon's user may enter it.
  const dataDir = join(root, "store");
  mkdirSync(dataDir, { mode: 0o700 });
  const cluster = await startCluster({ peers: 1, seed: false, t, dataRoot: join(root, "daemons") });
  const peer = await cluster.addDaemon({ name: "private", dataDir });

  const mine = join(root, "mine.bin");
  const r1 = await peer.get([url, "-O", mine, "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(r1.code, 0, r1.stderr);
  assert.equal(await sha256File(mine), sha256Hex(data));
  const stored = join(taskDir(dataDir, taskId({ url })), "data");
  assert.equal(statSync(mine).ino, statSync(stored).ino, "the daemon's own user gets a hard link to the verified store file");

  if (process.getuid?.() !== 0) {
    t.diagnostic("not root: the other-user case is skipped");
    return;
  }
  const probe = await runDamselfly(["--version"], { uid: NOBODY, gid: NOBODY, timeoutMs: 20_000 });
  if (probe.code !== 0) {
    t.diagnostic(`user nobody cannot run this checkout (${probe.stderr.trim().split("\n")[0]}): the other-user case is skipped`);
    return;
  }
  const outDir = join(root, "nobody");
  mkdirSync(outDir, { mode: 0o777 });
  chmodSync(outDir, 0o777);
  const theirs = join(outDir, "theirs.bin");
  const r2 = await peer.get([url, "-O", theirs, "--no-progress", "--digest", `sha256:${sha256Hex(data)}`], { timeoutMs: 60_000, uid: NOBODY, gid: NOBODY });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(await sha256File(theirs), sha256Hex(data));
  const st = statSync(theirs);
  assert.equal(st.uid, NOBODY, "the output belongs to the user who asked for it");
  assert.notEqual(st.ino, statSync(stored).ino);
  assert.deepEqual(readdirSync(outDir), ["theirs.bin"], "no temporary files left");
});
