// A daemon whose store runs out of space fails the download with a clear
// storage error (exit 8), leaves no output behind, and keeps working for
// files that fit. The store is a 16 MiB tmpfs this test mounts (root only).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex } from "../helpers/origin.js";
import { sha256File } from "../helpers/store.js";

const MiB = 1024 * 1024;

function tryMount(dir: string): boolean {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

test("a full disk fails the download with DF_ERR_STORAGE_FULL and no output; smaller files still work", { timeout: 90_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "damselfly-full-"));
  const store = join(root, "store");
  mkdirSync(store);
  if (process.getuid?.() !== 0 || !tryMount(store)) {
    rmSync(root, { recursive: true, force: true });
    t.skip("needs root and tmpfs mounts");
    return;
  }
  t.after(() => {
    try {
      execFileSync("umount", ["-l", store], { stdio: "ignore" });
    } catch {
      // already gone
    }
    rmSync(root, { recursive: true, force: true });
  });
  const origin = await startOrigin();
  t.after(() => origin.close());
  origin.addRandomFile("/full/big.bin", 40 * MiB, "big");
  const small = origin.addRandomFile("/full/small.bin", 3 * MiB, "small");
  const cluster = await startCluster({ peers: 0, seed: false, t, dataRoot: join(root, "daemons") });
  const daemon = await cluster.addDaemon({ name: "tiny", dataDir: store });
  const outDir = join(root, "out");
  mkdirSync(outDir);

  const big = await daemon.get([origin.url("/full/big.bin"), "-O", join(outDir, "big.bin"), "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(big.code, 8, big.stderr);
  assert.match(big.stderr, /^damselfly get: DF_ERR_STORAGE_FULL: no space left on device: /m);
  assert.equal(existsSync(join(outDir, "big.bin")), false);
  assert.deepEqual(readdirSync(outDir), []);

  const ok = await daemon.get([origin.url("/full/small.bin"), "-O", join(outDir, "small.bin"), "--no-progress"], { timeoutMs: 60_000 });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await sha256File(join(outDir, "small.bin")), sha256Hex(small));
});
