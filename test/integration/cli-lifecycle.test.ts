// The command line around the servers: ready lines, clean exit on signals,
// usage errors, `config print`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { runDamselfly, spawnDamselfly, loopbackDaemonArgs } from "../helpers/procs.js";

test("scheduler and daemon log ready lines and exit 0 on SIGTERM/SIGINT", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-lifecycle-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sched = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0"], { t });
  const ready = await sched.waitForLog("scheduler ready");
  assert.match(String(ready.listen), /^127\.0\.0\.1:\d+$/);
  assert.notEqual(ready.listen, "127.0.0.1:0", "the bound port is logged");

  const daemon = spawnDamselfly(["daemon", ...loopbackDaemonArgs(String(ready.listen), join(dir, "d"))], { t });
  const dready = await daemon.waitForLog("daemon ready");
  for (const k of ["api", "upload", "proxy"]) assert.match(String(dready[k]), /^127\.0\.0\.1:[1-9]\d*$/, k);

  assert.equal(await daemon.stop("SIGTERM"), 0, daemon.stderr());
  assert.equal(await sched.stop("SIGINT"), 0, sched.stderr());
});

test("the scheduler restarts itself with its V8 pool, and follows its parent out", async (t) => {
  const sched = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0"], { t, env: { DAMSELFLY_V8_POOL_SIZE: "2" } });
  const ready = await sched.waitForLog("scheduler ready");
  const pid = Number(ready.pid);
  assert.notEqual(pid, sched.pid, "the scheduler runs in a process of its own");
  assert.match(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /--v8-pool-size=2\0/);
  // Killed without a chance to pass anything on: the scheduler notices.
  sched.kill("SIGKILL");
  await sched.exited;
  const deadline = Date.now() + 10_000;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(existsSync(`/proc/${pid}`), false, "the restarted scheduler exits once its parent is gone");
  assert.match(sched.stderr(), /"signal":"SIGTERM","msg":"shutting down"/);

  const bad = await runDamselfly(["scheduler", "--listen", "127.0.0.1:0"], { env: { DAMSELFLY_V8_POOL_SIZE: "lots" } });
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^damselfly: DAMSELFLY_V8_POOL_SIZE="lots": expected an integer 0\.\.64$/m);
});

test("a server that cannot start reports a code and a non-zero exit", async () => {
  const r = await runDamselfly(["scheduler", "--listen", "not-an-address"]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /^damselfly: DF_ERR_CONFIG: /m);
});

test("usage errors exit 2", async () => {
  for (const args of [["no-such-command"], ["scheduler", "--no-such-flag"], ["config", "print", "nothing"], []]) {
    const r = await runDamselfly(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
  }
  const help = await runDamselfly(["get", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout.toString(), /-O, --output/);
});

test("config print merges defaults, the YAML file and env", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-config-print-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "daemon.yaml");
  writeFileSync(file, "piecesInFlight: 3\nlisten: 127.0.0.1:7000\n");
  const r = await runDamselfly(["config", "print", "daemon", "--config", file], { env: { DAMSELFLY_DAEMON_LISTEN: "127.0.0.1:7001" } });
  assert.equal(r.code, 0, r.stderr);
  // Flat keys of before still work (deprecated); the output is nested.
  const cfg = parseYaml(r.stdout.toString()) as { download: Record<string, unknown>; server: Record<string, unknown>; security: Record<string, unknown> };
  assert.equal(cfg.download.piecesInFlight, 3);
  // The API's listeners are a list (a Unix socket and/or HOST:PORT); one address is a list of one.
  assert.deepEqual(cfg.server.listen, ["127.0.0.1:7001"]);
  assert.equal(cfg.download.pieceTimeout, "30s");
  assert.match(r.stderr, /"piecesInFlight" is deprecated: use download\.piecesInFlight/);

  writeFileSync(file, "download:\n  piecesInFlight: 5\n");
  const nested = await runDamselfly(["config", "print", "daemon", "--config", file], { env: { DAMSELFLY_CLUSTER_TOKEN: "s3cret" } });
  assert.equal(nested.code, 0, nested.stderr);
  const n = parseYaml(nested.stdout.toString()) as typeof cfg;
  assert.equal(n.download.piecesInFlight, 5);
  assert.equal(n.security.clusterToken, "(set)", "a secret is never printed");

  writeFileSync(file, "noSuchKey: 1\n");
  const bad = await runDamselfly(["config", "print", "daemon", "--config", file]);
  assert.equal(bad.code, 3);
  assert.match(bad.stderr, /^damselfly: DF_ERR_CONFIG: .*unknown key "noSuchKey"/m);
});
