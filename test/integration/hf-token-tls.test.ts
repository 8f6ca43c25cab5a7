// A hub token in a mutual-TLS cluster: a private repository's plain file
// (fetched from the hub itself, so the fetcher needs the token) reaches the
// seed peer only over the mutually authenticated links (scheduler -> seed
// triggers go to seed-peer certificates alone), in memory: no component logs
// or stores it. A second node without the token is refused by the hub's own
// check before any cached copy; with it, it gets the bytes from the swarm.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "../../src/common/error-codes.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { type HubFixture, startHub } from "../helpers/hub.js";
import { randomBytesSeeded } from "../helpers/origin.js";
import { filesHolding } from "../helpers/store.js";

const MiB = 1024 * 1024;
const TOKEN = "hf_tls_private_reader";
// A plain (non-LFS) file the hub serves itself: several pieces.
const data = randomBytesSeeded(12 * MiB, "hf-tls-plain");

describe("hub token over mutual TLS", { timeout: 150_000 }, () => {
  let hub: HubFixture;
  let cluster: Cluster;
  let outDir: string;
  const get = (i: number, out: string, env: Record<string, string | undefined>) =>
    cluster.peers[i]!.get(["hf://acme/secret-model/tokenizer.bin", "-O", out, "--no-progress"], { env: { HF_ENDPOINT: hub.url, ...env }, timeoutMs: 90_000 });
  const hubSent = () => [...hub.hubBytes.values()].reduce((a, b) => a + b, 0);

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-hf-tls-"));
    hub = await startHub();
    hub.repos.create("model", "acme/secret-model", { private: true, tokens: [TOKEN] }).commit({ "tokenizer.bin": data });
    cluster = await startCluster({ peers: 2, seed: true, tls: true });
  });
  after(async () => {
    await cluster?.stop();
    await hub?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("the seed fetches with the token it got over mTLS; the hub sends the file once; nothing logs or stores it", async () => {
    const out = join(outDir, "a.bin");
    const r = await get(0, out, { HF_TOKEN: TOKEN });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(out).equals(data));
    // The seed peer was triggered with the download (and so the token) over mTLS.
    assert.ok(
      cluster.seed!.proc.logs.some((l) => l.msg === "task triggered by the scheduler"),
      "the seed was never triggered",
    );
    const gets = hub.requests.filter((q) => q.server === "hub" && q.method === "GET");
    assert.ok(gets.length > 0, "nobody fetched from the hub");
    assert.ok(
      gets.every((q) => q.authorization === `Bearer ${TOKEN}`),
      "a fetch from the hub came without the token",
    );
    assert.ok(hubSent() >= data.length && hubSent() <= 1.1 * data.length, `the hub sent ${hubSent()} bytes`);
    for (const d of [...cluster.peers, cluster.seed!]) {
      assert.ok(!d.proc.stderr().includes(TOKEN) && !d.proc.stdout().includes(TOKEN), `${d.name} logged the token`);
      assert.deepEqual(filesHolding(d.dataDir, TOKEN, 64 * MiB), [], `${d.name} stored the token`);
    }
    assert.ok(!cluster.scheduler.proc.stderr().includes(TOKEN), "the scheduler logged the token");
  });

  test("a node without the token is refused by the hub before any cached copy; with it, the swarm serves it", async () => {
    const refused = join(outDir, "refused.bin");
    const r = await get(1, refused, { HF_TOKEN: undefined, HUGGING_FACE_HUB_TOKEN: undefined });
    assert.equal(r.code, ExitCode.AUTH, r.stderr);
    assert.equal(existsSync(refused), false);
    const before = hubSent();
    const out = join(outDir, "b.bin");
    const ok = await get(1, out, { HF_TOKEN: TOKEN });
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(readFileSync(out).equals(data));
    assert.equal(hubSent(), before, "the hub sent the file again");
  });
});
