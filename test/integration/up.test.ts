// The README's quick start: `bin/damselfly up` runs a whole swarm and prints
// a `get` command that works as pasted. Uses up's fixed ports (8002 is moved
// aside to avoid a local scheduler), so it must not run beside another `up`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { runDamselfly, spawnDamselfly } from "../helpers/procs.js";

test("up prints a get example that works as pasted; the second run is a local hit", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-up-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const up = spawnDamselfly(["up", "--data-dir", join(dir, "data"), "--scheduler-port", "0", "--manager-port", "0"], { t });
  await up.waitForStdout("Press Ctrl-C to stop.", 30_000);

  // The manager is part of it: its console URL and the generated root
  // password are printed, and they work; the scheduler registered with it.
  const consoleUrl = /console (http:\/\/127\.0\.0\.1:\d+)\//.exec(up.stdout())?.[1];
  const password = /user root\s+password (\S+)\s+\(generated/.exec(up.stdout())?.[1];
  assert.ok(consoleUrl && password, `no console URL or password in:\n${up.stdout()}`);
  const signin = await request(`${consoleUrl}/api/v1/users/signin`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "root", password }),
  });
  const { token } = (await signin.body.json()) as { token: string };
  assert.equal(signin.statusCode, 200);
  let schedulers: { state: string }[] = [];
  for (let i = 0; i < 50 && schedulers.length === 0; i++) {
    const r = await request(`${consoleUrl}/api/v1/schedulers`, { headers: { authorization: `Bearer ${token}` } });
    schedulers = (await r.body.json()) as { state: string }[];
    if (schedulers.length === 0) await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(
    schedulers.map((s) => s.state),
    ["active"],
  );
  const line = up
    .stdout()
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l.startsWith("bin/damselfly get "));
  assert.ok(line, `no get example in:\n${up.stdout()}`);
  const out = join(dir, "demo.bin");
  const args = line
    .split(/\s+/)
    .slice(1)
    .map((a) => (a === "/tmp/demo.bin" ? out : a));
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
