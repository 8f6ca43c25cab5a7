// `damselfly get -r hf://OWNER/REPO[/FOLDER] -O DIR` against the Hub fixture:
// the layout and bytes of a repository with nested folders, LFS bytes from
// the CDN about once across two peers, --include/--exclude, a second run
// that fetches nothing, a hostile path refused, a glob matching nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "../../src/common/error-codes.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { listTree } from "../helpers/store.js";
import { type HubFixture, startHub } from "../helpers/hub.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";

const MiB = 1024 * 1024;
const files: Record<string, Buffer> = {
  "config.json": Buffer.from('{"hidden_size": 64}\n'),
  "weights/model-00001.safetensors": randomBytesSeeded(3 * MiB, "rec-w1"),
  "weights/model-00002.safetensors": randomBytesSeeded(2 * MiB, "rec-w2"),
  "weights/extra/notes.txt": Buffer.from("notes\n"),
  "tokenizer/vocab.txt": Buffer.from("a\nb\nc\n"),
};
const lfs = new Set(["weights/model-00001.safetensors", "weights/model-00002.safetensors"]);

describe("get -r hf://", { timeout: 240_000 }, () => {
  let hub: HubFixture;
  let cluster: Cluster;
  let base: string;
  let nested: ReturnType<HubFixture["repos"]["create"]>;
  const env = (): Record<string, string> => ({ HF_ENDPOINT: hub.url });
  const get = (i: number, args: string[]) => cluster.peers[i]!.get([...args, "--no-progress"], { env: env(), timeoutMs: 120_000 });
  const cdnTotal = () => [...lfs].reduce((n, p) => n + hub.cdnBytesFor(sha256Hex(files[p]!)), 0);

  before(async () => {
    base = mkdtempSync(join(tmpdir(), "damselfly-hf-rec-"));
    // Two entries a page: the listing follows Link rel="next".
    hub = await startHub({ treePageSize: 2 });
    const spec: Record<string, Buffer | { data: Buffer; lfs: boolean }> = {};
    for (const [p, data] of Object.entries(files)) spec[p] = lfs.has(p) ? { data, lfs: true } : data;
    nested = hub.repos.create("model", "acme/nested");
    nested.commit(spec);
    hub.repos.create("model", "acme/hostile").commit({ "../evil": Buffer.from("evil\n"), "ok.txt": Buffer.from("ok\n") });
    cluster = await startCluster({ peers: 2, seed: true });
  });
  after(async () => {
    await cluster?.stop();
    await hub?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("two peers get a repository with nested folders: same layout and bytes, LFS bytes from the CDN about once", async (t) => {
    const dirs = [join(base, "a"), join(base, "b")];
    const results = await Promise.all(dirs.map((d, i) => get(i, ["-r", "hf://acme/nested", "-O", d])));
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
    for (const d of dirs) {
      assert.deepEqual(listTree(d), Object.keys(files).sort());
      for (const [p, data] of Object.entries(files)) assert.ok(readFileSync(join(d, p)).equals(data), `${d}/${p}`);
    }
    const lfsBytes = [...lfs].reduce((n, p) => n + files[p]!.length, 0);
    t.diagnostic(`the CDN sent ${cdnTotal()} bytes for ${lfsBytes} LFS bytes`);
    assert.ok(cdnTotal() >= lfsBytes && cdnTotal() <= 1.1 * lfsBytes, `the CDN sent ${cdnTotal()} bytes`);
    assert.match(results[0]!.stderr, /5 files \(0 already present\)/);
    // 5 files and 4 folders, two a page: each listing took several pages.
    assert.ok(hub.requests.filter((q) => q.url.includes("/tree/") && q.url.includes("cursor=")).length >= 2 * 3);
  });

  test("a second run skips every file: no new bytes from the hub or the CDN", async () => {
    const cdn = cdnTotal();
    const hubGets = hub.requests.filter((r) => r.server === "hub" && r.method === "GET" && r.url.includes("/resolve/")).length;
    const r = await get(0, ["-r", "hf://acme/nested", "-O", join(base, "a")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /5 files \(5 already present\)/);
    assert.equal(cdnTotal(), cdn);
    assert.equal(hub.requests.filter((q) => q.server === "hub" && q.method === "GET" && q.url.includes("/resolve/")).length, hubGets);
  });

  test("a file changed upstream at the same size, and one changed locally, are fetched again; the rest is not", async () => {
    const vocab = Buffer.from("x\ny\nz\n");
    nested.commit({ "tokenizer/vocab.txt": vocab });
    const d = join(base, "a");
    writeFileSync(join(d, "config.json"), Buffer.alloc(files["config.json"]!.length, 0x20));
    const cdn = cdnTotal();
    const r = await get(0, ["-r", "hf://acme/nested", "-O", d]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /5 files \(3 already present\)/);
    assert.ok(readFileSync(join(d, "tokenizer/vocab.txt")).equals(vocab));
    assert.ok(readFileSync(join(d, "config.json")).equals(files["config.json"]!));
    assert.equal(cdnTotal(), cdn);
  });

  test("a folder with --include/--exclude: paths relative to the folder", async () => {
    const d = join(base, "sub");
    const r = await get(1, ["-r", "hf://acme/nested/weights", "--include", "**/*.safetensors", "--include", "extra/*", "--exclude", "*00002*", "-O", d]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listTree(d), ["extra/notes.txt", "model-00001.safetensors"]);
  });

  test("a hostile path is refused and nothing is written outside DIR", async () => {
    const d = join(base, "hostile", "out");
    const r = await get(0, ["-r", "hf://acme/hostile", "-O", d]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /skipping "\.\.\/evil"/);
    assert.deepEqual(listTree(d), ["ok.txt"]);
    assert.equal(existsSync(join(base, "hostile", "evil")), false);
  });

  test("a glob that matches nothing: DF_ERR_SOURCE_NOT_FOUND and nothing written", async () => {
    const d = join(base, "none");
    const r = await get(0, ["-r", "hf://acme/nested", "--include", "*.gguf", "-O", d]);
    assert.equal(r.code, ExitCode.NOT_FOUND, r.stderr);
    assert.match(r.stderr, /DF_ERR_SOURCE_NOT_FOUND/);
    assert.equal(existsSync(d), false);
  });
});
