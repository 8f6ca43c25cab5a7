// The README's quick start: `bin/damselfly up` runs a whole swarm, with
// mutual TLS between its components and a CA it made in its data dir, and
// prints a `get` command that works as pasted. Uses up's fixed ports (8002 is
// moved aside to avoid a local scheduler), so it must not run beside another
// `up`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { Agent, request } from "undici";
import { runDamselfly, spawnDamselfly } from "../helpers/procs.js";

test("up prints a get example that works as pasted; the second run is a local hit", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-up-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const up = spawnDamselfly(["up", "--data-dir", join(dir, "data"), "--scheduler-port", "0", "--manager-port", "0"], { t });
  await up.waitForStdout("Press Ctrl-C to stop.", 30_000);

  // TLS is on: the CA is where the banner says, in the data dir.
  const caFile = /CA (\S+ca\.crt)/.exec(up.stdout())?.[1];
  assert.equal(caFile, join(dir, "data", "tls", "ca", "ca.crt"), up.stdout());
  const ca = readFileSync(caFile);
  const dispatcher = new Agent({ connect: { ca } });
  t.after(() => dispatcher.close());

  // The manager is part of it: its console URL (https, with up's CA) and
  // the generated root password are printed, and they work; the scheduler
  // registered with it.
  const consoleUrl = /console (https:\/\/127\.0\.0\.1:\d+)\//.exec(up.stdout())?.[1];
  const password = /user root\s+password (\S+)\s+\(generated/.exec(up.stdout())?.[1];
  assert.ok(consoleUrl && password, `no console URL or password in:\n${up.stdout()}`);
  const page = await request(`${consoleUrl}/`, { dispatcher });
  assert.equal(page.statusCode, 200);
  assert.match(await page.body.text(), /<html/i);
  const signin = await request(`${consoleUrl}/api/v1/users/signin`, {
    dispatcher,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "root", password }),
  });
  const { token } = (await signin.body.json()) as { token: string };
  assert.equal(signin.statusCode, 200);
  let schedulers: { state: string }[] = [];
  for (let i = 0; i < 50 && schedulers.length === 0; i++) {
    const r = await request(`${consoleUrl}/api/v1/schedulers`, { dispatcher, headers: { authorization: `Bearer ${token}` } });
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

  // The scheduler serves only clients with a certificate of up's CA.
  const schedulerPort = Number(/scheduler\s+127\.0\.0\.1:(\d+)/.exec(up.stdout())?.[1]);
  assert.equal(await handshake(schedulerPort, ca), "refused", "a client without a certificate is refused by the scheduler");

  assert.equal(await up.stop("SIGINT", 10_000), 0);

  // A second start keeps the CA (a browser that trusts it keeps trusting the console).
  const before = new X509Certificate(ca).fingerprint256;
  const again = spawnDamselfly(["up", "--data-dir", join(dir, "data"), "--scheduler-port", "0", "--manager-port", "0", "--no-demo"], { t });
  await again.waitForStdout("Press Ctrl-C to stop.", 30_000);
  assert.equal(new X509Certificate(readFileSync(caFile)).fingerprint256, before);
  assert.equal(await again.stop("SIGINT", 10_000), 0);
});

// Whether a TLS client that trusts `ca` but shows no certificate gets
// served: "served" if the server answers an HTTP/2 request, "refused" if
// the connection ends first (TLS 1.3 servers refuse after the handshake).
async function handshake(port: number, ca: Buffer): Promise<"served" | "refused"> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca, ALPNProtocols: ["h2"] });
    s.once("secureConnect", () => {
      // The HTTP/2 preface: a server that accepted us answers with SETTINGS.
      s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    });
    s.once("data", () => {
      s.destroy();
      resolve("served");
    });
    s.once("error", () => resolve("refused"));
    s.once("close", () => resolve("refused"));
  });
}
