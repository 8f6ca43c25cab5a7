// The README's quick start: `bin/damselfly up` runs a whole swarm and prints
// a `get` command that works as pasted. Uses up's fixed ports (8002 is moved
// aside to avoid a local scheduler), so it must not run beside another `up`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runDamselfly, spawnDamselfly } from "../helpers/procs.js";

test("up prints a get example that works as pasted; the second run is a local hit", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-up-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const up = spawnDamselfly(["up", "--data-dir", join(dir, "data"), "--scheduler-port", "0"], { t });
  await up.waitForStdout("Press Ctrl-C to stop.", 30_000);
  const line = up
    .stdout()
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l.startsWith("bin/damselfly get "));
  assert.ok(line, `no get example in:\n${up.stdout()}`);
  const out = join(dir, "demo.bin");
  const args = line.split(/\s+/).slice(1).map((a) => (a === "/tmp/demo.bin" ? out : a));
  assert.ok(args.includes("--digest"), "the example verifies the download");

  const first = await runDamselfly(args, { timeoutMs: 90_000 });
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /from peers 256\.0 MiB, from origin 0 B, local 0 B/);
  assert.equal(statSync(out).size, 256 * 1024 * 1024);

  const second = await runDamselfly(args, { timeoutMs: 60_000 });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /from peers 0 B, from origin 0 B, local 256\.0 MiB/);

  assert.equal(await up.stop("SIGINT", 10_000), 0);
});
