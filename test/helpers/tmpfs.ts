// A small tmpfs for tests that fill a disk (root only).
import type { TestContext } from "node:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function tryMount(dir: string, size: string): boolean {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

// A fresh directory with a tmpfs of `size` at root/store, unmounted and
// removed when the test ends; undefined (test skipped) without root or mounts.
export function tmpfsStore(t: TestContext, prefix: string, size: string): { root: string; store: string } | undefined {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const store = join(root, "store");
  mkdirSync(store);
  if (process.getuid?.() !== 0 || !tryMount(store, size)) {
    rmSync(root, { recursive: true, force: true });
    t.skip("needs root and tmpfs mounts");
    return undefined;
  }
  t.after(() => {
    try {
      execFileSync("umount", ["-l", store], { stdio: "ignore" });
    } catch {
      // already gone
    }
    rmSync(root, { recursive: true, force: true });
  });
  return { root, store };
}
