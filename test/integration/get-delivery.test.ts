// How `get` puts a finished task at its output path. The daemon never writes
// outside its store: it names its verified data file and the client copies
// it (a reflink where the filesystem can) with its own permissions, never a
// hard link (editing the output would edit the cache); when the store is out
// of the client's reach (another user's private store), the bytes are
// streamed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { taskId } from "../../src/common/task-id.js";
import { startCluster } from "../helpers/cluster.js";
import { runDamselfly } from "../helpers/procs.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { sha256File, taskDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const NOBODY = 65534;

test("get delivers a copy for its own user and by stream for a user who cannot read the store", { timeout: 90_000 }, async (t) => {
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
  assert.notEqual(statSync(mine).ino, statSync(stored).ino, "the daemon's own user gets a copy of the verified store file, not a hard link");
  assert.equal(statSync(stored).nlink, 1);

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

test("an edited output or store file never comes back from get --digest", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "damselfly-edits-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const origin = await startOrigin();
  t.after(() => origin.close());
  const data = origin.addRandomFile("/edits/blob.bin", 9 * MiB + 3, "edits");
  const url = origin.url("/edits/blob.bin");
  const digest = `sha256:${sha256Hex(data)}`;
  const cluster = await startCluster({ peers: 1, seed: false, t, dataRoot: join(root, "daemons") });
  const peer = cluster.peers[0]!;
  const stored = join(taskDir(peer.dataDir, taskId({ url })), "data");
  const get = async (name: string) => {
    const out = join(root, name);
    const r = await peer.get([url, "-O", out, "--no-progress", "--digest", digest], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    return out;
  };

  // The user edits their output: the cache keeps the original bytes.
  overwrite(await get("first.bin"), 1000, "edited by the user");
  assert.equal(await sha256File(stored), sha256Hex(data), "editing the output edited the store file");
  assert.equal(await sha256File(await get("second.bin")), sha256Hex(data));

  // Someone with the daemon's rights edits the store file itself: the
  // daemon notices the change, checks every piece again and repairs it
  // rather than vouching for the digest it hashed at download time.
  overwrite(stored, 5 * MiB, "edited in the store");
  assert.equal(await sha256File(await get("third.bin")), sha256Hex(data), "get --digest delivered edited bytes with exit 0");
  assert.equal(await sha256File(stored), sha256Hex(data), "the edited piece was fetched again");
});

function overwrite(path: string, at: number, text: string): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Buffer.from(text), 0, text.length, at);
  } finally {
    closeSync(fd);
  }
}
