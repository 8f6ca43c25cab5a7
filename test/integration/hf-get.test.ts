// `damselfly get hf://OWNER/REPO/PATH` against the Hub fixture (a hub and a
// separate CDN, test/helpers/hub.ts): three peers at once get one LFS file
// and the CDN sends it about once, never seeing the token; the same sha256 in
// another revision or repository is the same task (no new CDN bytes); a file
// changed upstream is fetched again; a plain file works; refusals and missing
// repositories, revisions and files have their own exit codes and write nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "../../src/common/error-codes.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { type HubFixture, startHub } from "../helpers/hub.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";
import { filesHolding, sha256File } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const TOKEN = "hf_reader_token";
const weightsV1 = randomBytesSeeded(SIZE, "hf-weights-v1");
const weightsV2 = randomBytesSeeded(SIZE, "hf-weights-v2");
const config = Buffer.from('{"hidden_size": 64}\n');
const secret = randomBytesSeeded(1 * MiB, "hf-secret");

describe("get hf://", { timeout: 180_000 }, () => {
  let hub: HubFixture;
  let cluster: Cluster;
  let outDir: string;
  const env = (): Record<string, string> => ({ HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN });
  const get = (i: number, args: string[], e: Record<string, string> = env()) =>
    cluster.peers[i]!.get([...args, "--no-progress"], { env: e, timeoutMs: 80_000 });

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-hf-out-"));
    hub = await startHub();
    const model = hub.repos.create("model", "acme/tiny", { tokens: [TOKEN] });
    model.commit({ "config.json": config, "model.safetensors": { data: weightsV1, lfs: true } });
    model.tag("v1.0", "main");
    // The same weights in a dataset repository.
    hub.repos.create("dataset", "acme/mirror").commit({ "weights/pytorch_model.safetensors": { data: weightsV1, lfs: true } });
    hub.repos.create("model", "acme/private", { private: true, tokens: [TOKEN] }).commit({ "w.bin": { data: secret, lfs: true }, "config.json": config });
    cluster = await startCluster({ peers: 3, seed: true });
  });
  after(async () => {
    await cluster?.stop();
    await hub?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("three concurrent gets of an LFS file: identical bytes, the CDN sends it about once, without the token", async (t) => {
    const sha = sha256Hex(weightsV1);
    const results = await Promise.all(cluster.peers.map((_, i) => get(i, ["hf://acme/tiny/model.safetensors", "-O", join(outDir, `out-${i}.bin`)])));
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
    for (let i = 0; i < results.length; i++) assert.equal(await sha256File(join(outDir, `out-${i}.bin`)), sha);
    const served = hub.cdnBytesFor(sha);
    t.diagnostic(`the CDN sent ${served} body bytes for a ${SIZE}-byte file (${(served / SIZE).toFixed(3)} x)`);
    assert.ok(served >= SIZE && served <= 1.1 * SIZE, `the CDN sent ${served} bytes`);
    const cdn = hub.requests.filter((r) => r.server === "cdn");
    assert.ok(cdn.length > 0);
    assert.ok(
      cdn.every((r) => r.authorization === undefined),
      "the token reached the CDN",
    );
    // The hub saw the token only in HEADs (the requesting nodes resolving), never a GET from a daemon.
    assert.ok(hub.requests.filter((r) => r.server === "hub").every((r) => r.method === "HEAD"));
  });

  test("each daemon records the sha256 it checked, so get does not hash its copy again", async () => {
    // The daemon vouches for a store file's digest (DownloadFinished.digest)
    // only when its task.json carries contentDigest.
    const digest = `sha256:${sha256Hex(weightsV1)}`;
    for (const peer of cluster.peers) {
      const metas = readdirSync(join(peer.dataDir, "tasks"), { recursive: true })
        .map(String)
        .filter((p) => p.endsWith("task.json"))
        .map((p) => JSON.parse(readFileSync(join(peer.dataDir, "tasks", p), "utf8")) as Record<string, unknown>);
      const task = metas.find((m) => m.digestTaskId === digest);
      assert.ok(task, `${peer.dataDir} holds the task`);
      assert.equal(task.digestVerified, true);
      assert.equal(task.contentDigest, digest);
    }
  });

  test("the same sha256 at another revision and in another repository: served locally, no CDN bytes", async () => {
    const sha = sha256Hex(weightsV1);
    const before = hub.cdnBytesFor(sha);
    const a = join(outDir, "tag.bin");
    const r1 = await get(0, ["hf://acme/tiny/model.safetensors", "--hf-revision", "v1.0", "-O", a]);
    assert.equal(r1.code, 0, r1.stderr);
    const b = join(outDir, "dataset.bin");
    const r2 = await get(1, ["hf://datasets/acme/mirror/weights/pytorch_model.safetensors", "-O", b]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(await sha256File(a), sha);
    assert.equal(await sha256File(b), sha);
    assert.equal(hub.cdnBytesFor(sha), before, "the CDN sent the file again");
  });

  test("a plain (non-LFS) file", async () => {
    const out = join(outDir, "config.json");
    const r = await get(2, ["hf://models/acme/tiny/config.json", "-O", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(out), config);
  });

  test("a plain file of a private repository: the token goes to the daemon as a header", async () => {
    const out = join(outDir, "private-config.json");
    const r = await get(0, ["hf://acme/private/config.json", "-O", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(out), config);
    // Held in memory for the task: never written to the daemons' files.
    for (const d of [...cluster.peers, cluster.seed!]) {
      assert.deepEqual(filesHolding(d.dataDir, TOKEN, 4 * MiB), [], `${d.name} stored the token`);
    }
  });

  test("a file changed upstream (new sha256) is fetched again from the CDN", async () => {
    hub.repos.get("model", "acme/tiny")!.commit({ "model.safetensors": { data: weightsV2, lfs: true } });
    const out = join(outDir, "v2.bin");
    const r = await get(1, ["hf://acme/tiny/model.safetensors", "-O", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), sha256Hex(weightsV2), "the peer served its cached copy of the old file");
    assert.ok(hub.cdnBytesFor(sha256Hex(weightsV2)) >= SIZE, "the new file came from the CDN");
  });

  test("a private repository without a token: auth exit code, no file", async () => {
    const out = join(outDir, "private.bin");
    const r = await get(0, ["hf://acme/private/w.bin", "-O", out], { HF_ENDPOINT: hub.url, HF_TOKEN: "" });
    assert.equal(r.code, ExitCode.AUTH, r.stderr);
    assert.match(r.stderr, /DF_ERR_SOURCE_AUTH.*HF_TOKEN/s);
    assert.equal(existsSync(out), false);
    const ok = await get(0, ["hf://acme/private/w.bin", "-O", out]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await sha256File(out), sha256Hex(secret));
  });

  test("a missing repository, revision or file: not-found exit code with the hub's message, no file", async () => {
    const cases: [string[], RegExp][] = [
      [["hf://acme/absent/model.safetensors"], /Repository not found/],
      [["hf://acme/tiny/model.safetensors", "--hf-revision", "no-such-branch"], /Invalid rev id: no-such-branch/],
      [["hf://acme/tiny/absent.bin"], /Entry not found/],
    ];
    for (const [args, message] of cases) {
      const out = join(outDir, "absent.bin");
      const r = await get(1, [...args, "-O", out]);
      assert.equal(r.code, ExitCode.NOT_FOUND, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /DF_ERR_SOURCE_NOT_FOUND/);
      assert.match(r.stderr, message);
      assert.ok(!r.stderr.includes(TOKEN), r.stderr);
      assert.equal(existsSync(out), false);
    }
  });

  test("a gated repository with a token not granted: auth exit code; a renamed repository's old name still resolves", async () => {
    hub.repos.create("model", "acme/gated", { gated: "manual", tokens: ["hf_granted"] }).commit({ "w.bin": { data: secret, lfs: true } });
    const out = join(outDir, "gated.bin");
    const r = await get(0, ["hf://acme/gated/w.bin", "-O", out]);
    assert.equal(r.code, ExitCode.AUTH, r.stderr);
    assert.match(r.stderr, /DF_ERR_SOURCE_AUTH.*GatedRepo/s);
    assert.equal(existsSync(out), false);
    // Content no earlier test fetched: the same bytes would be the same task, served by the swarm.
    const renamedConfig = Buffer.from('{"renamed": true}\n');
    hub.repos.create("model", "acme/old-name").commit({ "config.json": renamedConfig });
    hub.repos.rename("model", "acme/old-name", "acme/new-name");
    const renamed = join(outDir, "renamed.json");
    const r2 = await get(1, ["hf://acme/old-name/config.json", "-O", renamed]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(readFileSync(renamed), renamedConfig);
    // The daemon fetched the file under its new name.
    assert.ok(hub.requests.some((q) => q.method === "GET" && q.url.startsWith("/acme/new-name/resolve/") && q.status === 200));
    assert.ok(!hub.requests.some((q) => q.method === "GET" && q.url.startsWith("/acme/old-name/")));
  });

  test("the bytes are checked against the hub's sha256: a CDN serving other bytes fails, nothing written", async () => {
    const data = randomBytesSeeded(1 * MiB, "hf-corrupt");
    const repo = hub.repos.create("model", "acme/corrupt");
    const sha = repo.commit({ "w.bin": { data, lfs: true } });
    // The stored object changes under its sha256 (a corrupt CDN copy).
    repo.commits.get(sha)!.files.get("w.bin")!.data![1000]! ^= 0xff;
    const out = join(outDir, "corrupt.bin");
    const r = await get(2, ["hf://acme/corrupt/w.bin", "-O", out]);
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /DF_ERR_DIGEST/);
    assert.equal(existsSync(out), false);
  });

  test("a plain file is checked against its git blob id: a hub serving other bytes under it fails, nothing written", async () => {
    const repo = hub.repos.create("model", "acme/corrupt-plain");
    const sha = repo.commit({ "tokenizer.json": Buffer.from('{"vocab": ["a", "b", "c"]}\n') });
    // The bytes change under their blob id (what a lying mirror would serve for a cached blob).
    repo.commits.get(sha)!.files.get("tokenizer.json")!.data![3]! ^= 0x01;
    const out = join(outDir, "corrupt-tokenizer.json");
    const r = await get(2, ["hf://acme/corrupt-plain/tokenizer.json", "-O", out]);
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /DF_ERR_DIGEST/);
    assert.equal(existsSync(out), false);
  });

  test("--hf-endpoint overrides HF_ENDPOINT", async () => {
    const out = join(outDir, "flag.json");
    const r = await get(2, ["hf://acme/tiny/config.json", "--hf-endpoint", hub.url, "-O", out], { HF_ENDPOINT: "http://127.0.0.1:1", HF_TOKEN: "" });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(out), config);
  });
});
