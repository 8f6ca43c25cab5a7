// A private hf:// repository preheated through a cluster on mutual TLS: the
// manager hands the job's hub token to the scheduler over mutual TLS, the seed
// peer fetches the plain file (which needs the token) and the LFS file (whose
// CDN URL needs none), a peer's get is then a swarm hit, and the token is in
// no database file, no seed file and no process's output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { startCluster } from "../helpers/cluster.js";
import { startHub } from "../helpers/hub.js";
import { startManager, waitForSchedulers } from "../helpers/manager.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";
import { closedPort, runDamselfly } from "../helpers/procs.js";
import { tempDir } from "../helpers/store.js";

const HUB_TOKEN = "hf_tls_Token_Private_51";

test("preheat of a private hf:// repository over mutual TLS: the token reaches the seed only over it, and is stored nowhere", {
  timeout: 180_000,
}, async (t) => {
  const hub = await startHub();
  t.after(() => hub.close());
  const weights = randomBytesSeeded(1024 * 1024, "tls-hf");
  const config = Buffer.from('{"tls": true}\n');
  hub.repos.create("model", "acme/private", { private: true, tokens: [HUB_TOKEN] }).commit({
    "config.json": config,
    "model.safetensors": { data: weights, lfs: true },
  });
  // The manager's address is fixed first: the schedulers start with it and
  // register once the manager is up (under the cluster's CA).
  const port = await closedPort();
  const cluster = await startCluster({ peers: 1, tls: true, t, schedulerArgs: ["--manager", `https://127.0.0.1:${port}`, "--manager-interval", "500ms"] });
  const pki = cluster.pki!;
  const files = await pki.issue("manager", "manager");
  const manager = await startManager({
    t,
    listen: `127.0.0.1:${port}`,
    args: [...(await pki.args("manager", "manager")), "--hf-endpoint", hub.url],
    tlsCa: files.ca,
  });
  const root = await manager.signin();
  const expired_at = new Date(Date.now() + 600_000).toISOString();
  const pat = (await manager.api("POST", "/api/v1/personal-access-tokens", { token: root, body: { name: "ci", scopes: ["job"], expired_at } })).body.token;
  await waitForSchedulers(manager, root);

  const env = { DAMSELFLY_PREHEAT_TOKEN: pat, NODE_EXTRA_CA_CERTS: files.ca, HF_TOKEN: HUB_TOKEN };
  const r = await runDamselfly(["preheat", "-r", "hf://acme/private", "--manager", manager.url], { env, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /2 task\(s\) preheated, 0 failed/);
  assert.equal(hub.cdnBytesFor(sha256Hex(weights)), weights.length);
  // The plain file went to the seed with the token: the hub saw it on a resolve GET.
  assert.ok(hub.requests.some((q) => q.server === "hub" && q.method === "GET" && q.url.includes("/resolve/") && q.authorization === `Bearer ${HUB_TOKEN}`));

  const out = join(tempDir(t, "dfm-tls-hf-"), "config.json");
  const g = await cluster.peers[0]!.get(["hf://acme/private/config.json", "-O", out, "--no-progress"], {
    env: { HF_ENDPOINT: hub.url, HF_TOKEN: HUB_TOKEN },
  });
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stderr, /from origin 0 B/);
  assert.ok(readFileSync(out).equals(config));

  for (const dir of [manager.dataDir, cluster.seed!.dataDir]) {
    for (const f of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
      const path = join(dir, f);
      if (statSync(path).isFile()) assert.ok(!readFileSync(path).includes(HUB_TOKEN), `the token is in ${path}`);
    }
  }
  for (const p of [manager.proc, ...cluster.schedulers.map((s) => s.proc), ...cluster.daemons.map((d) => d.proc)]) {
    assert.ok(!(p.stdout() + p.stderr()).includes(HUB_TOKEN), `the token is in the output of ${p.name}`);
  }
});
