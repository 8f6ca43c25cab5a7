// The Hugging Face Hub fixture (test/helpers/hub.ts) checked against the real
// Hub client, @huggingface/hub, pointed at it with `hubUrl`: if the client
// lists, resolves and downloads from the fixture and reports its errors as it
// does against huggingface.co, later hf:// tests can trust the fixture.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { downloadFile, fileDownloadInfo, fileExists, HubApiError, listFiles, modelInfo, pathsInfo } from "@huggingface/hub";
import { diskFile, type HubFixture, startHub } from "../helpers/hub.js";
import { gitBlobOid, lfsPointer } from "../helpers/hub-repos.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";

const TOKEN = "hf_fixture_reader";
const weightsV1 = randomBytesSeeded(300_000, "weights-v1");
const weightsV2 = randomBytesSeeded(300_000, "weights-v2");
const part1 = randomBytesSeeded(70_000, "part-1");
const part2 = randomBytesSeeded(50_000, "part-2");
const config = Buffer.from('{"hidden_size": 64}\n');
const trainData = randomBytesSeeded(40_000, "train");
const secret = randomBytesSeeded(20_000, "secret");

let hub: HubFixture;
let v1Sha: string;
let v2Sha: string;

before(async () => {
  // Three entries a page, so every recursive listing below spans pages.
  hub = await startHub({ treePageSize: 3 });
  const model = hub.repos.create("model", "acme/tiny");
  v1Sha = model.commit({
    "config.json": config,
    "README.md": "# tiny\n",
    "model.safetensors": { data: weightsV1, lfs: true },
    "shards/part-1.bin": { data: part1, lfs: true },
    "shards/part-2.bin": { data: part2, lfs: true },
    "tokenizer/vocab.txt": "a\nb\nc\n",
  });
  model.tag("v1.0", "main");
  v2Sha = model.commit({ "model.safetensors": { data: weightsV2, lfs: true }, "README.md": null });
  hub.repos.create("dataset", "acme/corpus").commit({ "data/train.bin": { data: trainData, lfs: true } });
  hub.repos.create("model", "acme/private", { private: true, tokens: [TOKEN] }).commit({ "w.bin": { data: secret, lfs: true }, "config.json": config });
  hub.repos.create("model", "acme/gated", { gated: "manual", tokens: [TOKEN] }).commit({ "w.bin": secret });
  hub.repos.create("space", "acme/app").commit({ "app.py": "print(1)\n", "big.bin": { data: part2, lfs: true } });
  hub.repos.create("model", "acme/old-name").commit({ "w.bin": { data: part1, lfs: true } });
  hub.repos.rename("model", "acme/old-name", "acme/new-name");
});

after(() => hub.close());

async function bytesOf(blob: Blob | null): Promise<Buffer> {
  assert.ok(blob, "the client found the file");
  return Buffer.from(await blob.arrayBuffer());
}

async function rejectsWith(p: Promise<unknown>, status: number, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HubApiError, `a HubApiError, got ${String(e)}`);
    assert.equal(e.statusCode, status);
    assert.match(e.message, message);
    return true;
  });
}

test("listFiles lists the tree at a branch, a tag and a commit, following the Link pages", async () => {
  const list = async (revision: string, path?: string, recursive = true) => {
    const out = [];
    for await (const f of listFiles({ repo: "acme/tiny", hubUrl: hub.url, revision, path, recursive })) out.push(f);
    return out;
  };
  const main = await list("main");
  assert.deepEqual(
    main.map((f) => `${f.type} ${f.path}`),
    [
      "file config.json",
      "file model.safetensors",
      "directory shards",
      "file shards/part-1.bin",
      "file shards/part-2.bin",
      "directory tokenizer",
      "file tokenizer/vocab.txt",
    ],
  );
  const weights = main.find((f) => f.path === "model.safetensors");
  assert.equal(weights?.lfs?.oid, sha256Hex(weightsV2));
  assert.equal(weights?.size, weightsV2.length);
  const cfg = main.find((f) => f.path === "config.json");
  assert.equal(cfg?.oid, gitBlobOid(config));
  assert.equal(cfg?.lfs, undefined);
  assert.ok(
    hub.requests.some((r) => r.url.includes("cursor=")),
    "the client followed a next page",
  );

  for (const rev of ["v1.0", v1Sha]) {
    const old = await list(rev);
    assert.ok(old.some((f) => f.path === "README.md"));
    assert.equal(old.find((f) => f.path === "model.safetensors")?.lfs?.oid, sha256Hex(weightsV1));
  }
  const shards = await list("main", "shards", false);
  assert.deepEqual(
    shards.map((f) => [f.path, f.lfs?.oid]),
    [
      ["shards/part-1.bin", sha256Hex(part1)],
      ["shards/part-2.bin", sha256Hex(part2)],
    ],
  );
  const top = await list("main", undefined, false);
  assert.deepEqual(
    top.map((f) => f.path),
    ["config.json", "model.safetensors", "shards", "tokenizer"],
  );
});

test("an LFS file is resolved through a redirect and its bytes come from the CDN", async () => {
  const info = await fileDownloadInfo({ repo: "acme/tiny", path: "model.safetensors", hubUrl: hub.url });
  assert.equal(info?.size, weightsV2.length);
  // The client follows the redirect before it reads headers: the ETag it
  // reports is the CDN's, not the hub's X-Linked-Etag (the sha256).
  assert.notEqual(info?.etag, `"${sha256Hex(weightsV2)}"`);
  const before = hub.cdnBytesFor(sha256Hex(weightsV2));
  const got = await bytesOf(await downloadFile({ repo: "acme/tiny", path: "model.safetensors", hubUrl: hub.url }));
  assert.ok(got.equals(weightsV2));
  // The whole file once, plus the one byte of the client's `Range: bytes=0-0` probe.
  assert.equal(hub.cdnBytesFor(sha256Hex(weightsV2)) - before, weightsV2.length + 1);
  assert.equal(hub.hubBytes.get("/acme/tiny/resolve/main/model.safetensors") ?? 0, 0);

  const shard = await downloadFile({ repo: "acme/tiny", path: "shards/part-1.bin", hubUrl: hub.url, revision: v1Sha });
  assert.ok((await bytesOf(shard)).equals(part1));
  const oldWeights = await downloadFile({ repo: "acme/tiny", path: "model.safetensors", hubUrl: hub.url, revision: "v1.0" });
  assert.ok((await bytesOf(oldWeights)).equals(weightsV1));
  const data = await downloadFile({ repo: "datasets/acme/corpus", path: "data/train.bin", hubUrl: hub.url });
  assert.ok((await bytesOf(data)).equals(trainData));
});

test("a disk-backed LFS file lists, resolves and serves Ranges as the same bytes in memory do", async () => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-hub-disk-"));
  // Bytes of their own: the CDN serves an object from the first file holding it.
  const weights = randomBytesSeeded(300_000, "weights-disk");
  try {
    const path = join(dir, "w.bin");
    writeFileSync(path, weights);
    const disk = hub.repos.create("model", "acme/disk");
    disk.commit({ "w.bin": await diskFile(path) });
    const mem = hub.repos.create("model", "acme/mem");
    mem.commit({ "w.bin": { data: weights, lfs: true } });
    const entry = async (repo: string) => {
      for await (const e of listFiles({ repo, hubUrl: hub.url })) return e;
    };
    assert.deepEqual(await entry("acme/disk"), await entry("acme/mem"));
    const got = await bytesOf(await downloadFile({ repo: "acme/disk", path: "w.bin", hubUrl: hub.url }));
    assert.ok(got.equals(weights));
    const res = await fetch(`${hub.url}/acme/disk/resolve/main/w.bin`, { headers: { Range: "bytes=1000-1999" } });
    assert.equal(res.status, 206);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(weights.subarray(1000, 2000)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a plain git file is served by the hub itself with the blob id as its ETag", async () => {
  const info = await fileDownloadInfo({ repo: "acme/tiny", path: "config.json", hubUrl: hub.url });
  assert.equal(info?.size, config.length);
  assert.equal(info?.etag, `"${gitBlobOid(config)}"`);
  const got = await bytesOf(await downloadFile({ repo: "acme/tiny", path: "config.json", hubUrl: hub.url }));
  assert.ok(got.equals(config));
  assert.ok((hub.hubBytes.get("/acme/tiny/resolve/main/config.json") ?? 0) >= config.length);
  const readme = await downloadFile({ repo: "acme/tiny", path: "README.md", hubUrl: hub.url, revision: "v1.0" });
  assert.equal((await bytesOf(readme)).toString(), "# tiny\n");
});

test("modelInfo reports the commit a revision points at", async () => {
  const info = await modelInfo({ name: "acme/tiny", hubUrl: hub.url, additionalFields: ["sha"] });
  assert.equal(info.name, "acme/tiny");
  assert.equal(info.sha, v2Sha);
  const old = await modelInfo({ name: "acme/tiny", hubUrl: hub.url, revision: "v1.0", additionalFields: ["sha"] });
  assert.equal(old.sha, v1Sha);
});

test("a private repository needs the right token", async () => {
  const base = { repo: "acme/private", path: "w.bin", hubUrl: hub.url };
  await rejectsWith(fileDownloadInfo(base), 401, /Repository not found/);
  await rejectsWith(downloadFile({ ...base, accessToken: "hf_wrong" }), 404, /Repository not found/);
  await rejectsWith(listFiles({ repo: "acme/private", hubUrl: hub.url }).next(), 401, /Repository not found/);
  const got = await bytesOf(await downloadFile({ ...base, accessToken: TOKEN }));
  assert.ok(got.equals(secret));
  const cfg = await downloadFile({ ...base, path: "config.json", accessToken: TOKEN });
  assert.ok((await bytesOf(cfg)).equals(config));
  const names = [];
  for await (const f of listFiles({ repo: "acme/private", hubUrl: hub.url, accessToken: TOKEN })) names.push(f.path);
  assert.deepEqual(names, ["config.json", "w.bin"]);
  // The token went to the hub, never to the CDN (fetch drops it on the
  // cross-origin redirect; the CDN URL is signed instead).
  assert.ok(hub.requests.some((r) => r.server === "hub" && r.authorization === `Bearer ${TOKEN}`));
  assert.ok(hub.requests.every((r) => r.server === "hub" || r.authorization === undefined));
});

test("a missing repository, revision or file is reported as the client reports it", async () => {
  await rejectsWith(fileDownloadInfo({ repo: "acme/nope", path: "x", hubUrl: hub.url }), 401, /Repository not found/);
  await rejectsWith(fileDownloadInfo({ repo: "acme/tiny", path: "config.json", hubUrl: hub.url, revision: "v9" }), 404, /Invalid rev id: v9/);
  await rejectsWith(listFiles({ repo: "acme/tiny", hubUrl: hub.url, revision: "nope" }).next(), 404, /Invalid rev id/);
  // A missing file is no error to the client: it answers null.
  assert.equal(await fileDownloadInfo({ repo: "acme/tiny", path: "missing.bin", hubUrl: hub.url }), null);
  assert.equal(await downloadFile({ repo: "acme/tiny", path: "README.md", hubUrl: hub.url }), null);
  await rejectsWith(listFiles({ repo: "acme/tiny", hubUrl: hub.url, path: "nope" }).next(), 404, /does not exist/);
});

test("HEAD on resolve answers as huggingface_hub reads file metadata, without following the redirect", async () => {
  const sha = sha256Hex(weightsV2);
  const r = await fetch(`${hub.url}/acme/tiny/resolve/main/model.safetensors`, { method: "HEAD", redirect: "manual" });
  assert.equal(r.status, 302);
  assert.equal(r.headers.get("x-repo-commit"), v2Sha);
  assert.equal(r.headers.get("x-linked-etag"), `"${sha}"`);
  assert.equal(r.headers.get("x-linked-size"), String(weightsV2.length));
  const location = new URL(r.headers.get("location") ?? "");
  assert.equal(location.origin, hub.cdnUrl);
  const ranged = await fetch(location, { headers: { Range: "bytes=10-19" } });
  assert.equal(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(weightsV2.subarray(10, 20)));
  location.searchParams.set("Expires", String(Number(location.searchParams.get("Expires")) + 1));
  assert.equal((await fetch(location)).status, 403, "a tampered CDN URL is refused");

  const plain = await fetch(`${hub.url}/datasets/acme/corpus/resolve/main/nope`, { method: "HEAD" });
  assert.equal(plain.status, 404);
  assert.equal(plain.headers.get("x-error-code"), "EntryNotFound");
  const rev = await fetch(`${hub.url}/acme/tiny/resolve/nope/config.json`, { method: "HEAD" });
  assert.equal(rev.headers.get("x-error-code"), "RevisionNotFound");
});

test("a gated repository shows its tree to all and its files only to a granted token", async () => {
  const info = await modelInfo({ name: "acme/gated", hubUrl: hub.url });
  assert.equal(info.gated, "manual");
  const names = [];
  for await (const f of listFiles({ repo: "acme/gated", hubUrl: hub.url })) names.push(f.path);
  assert.deepEqual(names, ["w.bin"]);
  const base = { repo: "acme/gated", path: "w.bin", hubUrl: hub.url };
  await rejectsWith(fileDownloadInfo(base), 401, /restricted/);
  await rejectsWith(fileDownloadInfo({ ...base, accessToken: "hf_other" }), 403, /not in the authorized list/);
  assert.ok((await bytesOf(await downloadFile({ ...base, accessToken: TOKEN }))).equals(secret));
});

test("raw gives what git stores: an LFS file's pointer, from the hub", async () => {
  const pointer = lfsPointer(sha256Hex(weightsV2), weightsV2.length);
  const info = await fileDownloadInfo({ repo: "acme/tiny", path: "model.safetensors", hubUrl: hub.url, raw: true });
  assert.equal(info?.size, pointer.length);
  const got = await downloadFile({ repo: "acme/tiny", path: "model.safetensors", hubUrl: hub.url, raw: true });
  assert.ok((await bytesOf(got)).equals(pointer));
  // The pointer once, plus the 1-byte probes of fileDownloadInfo here and inside downloadFile.
  assert.equal(hub.hubBytes.get("/acme/tiny/raw/main/model.safetensors"), pointer.length + 2);
});

test("spaces resolve under /spaces/, and a renamed repository redirects from its old name", async () => {
  const app = await downloadFile({ repo: "spaces/acme/app", path: "app.py", hubUrl: hub.url });
  assert.equal((await bytesOf(app)).toString(), "print(1)\n");
  const big = await downloadFile({ repo: "spaces/acme/app", path: "big.bin", hubUrl: hub.url });
  assert.ok((await bytesOf(big)).equals(part2));
  const moved = await downloadFile({ repo: "acme/old-name", path: "w.bin", hubUrl: hub.url });
  assert.ok((await bytesOf(moved)).equals(part1));
  const names = [];
  for await (const f of listFiles({ repo: "acme/old-name", hubUrl: hub.url })) names.push(f.path);
  assert.deepEqual(names, ["w.bin"]);
  assert.equal((await modelInfo({ name: "acme/old-name", hubUrl: hub.url })).name, "acme/new-name");
  const r = await fetch(`${hub.url}/acme/old-name/resolve/main/w.bin`, { method: "HEAD", redirect: "manual" });
  assert.equal(r.status, 307);
  assert.equal(r.headers.get("location"), "/acme/new-name/resolve/main/w.bin");
});

test("pathsInfo and fileExists answer for single paths", async () => {
  const infos = await pathsInfo({
    repo: "acme/tiny",
    hubUrl: hub.url,
    revision: "v1.0",
    paths: ["model.safetensors", "shards", "config.json", "missing"],
  });
  assert.deepEqual(
    infos.map((i) => [i.path, i.type, i.lfs?.oid ?? i.oid]),
    [
      ["model.safetensors", "file", sha256Hex(weightsV1)],
      ["shards", "directory", infos[1].oid],
      ["config.json", "file", gitBlobOid(config)],
    ],
  );
  const form = await fetch(`${hub.url}/api/models/acme/tiny/paths-info/main`, {
    method: "POST",
    body: new URLSearchParams([
      ["paths", "config.json"],
      ["paths", "README.md"],
    ]),
  });
  assert.deepEqual(
    ((await form.json()) as { path: string }[]).map((e: { path: string }) => e.path),
    ["config.json"],
  );
  assert.equal(await fileExists({ repo: "acme/tiny", hubUrl: hub.url, path: "shards/part-2.bin" }), true);
  assert.equal(await fileExists({ repo: "acme/tiny", hubUrl: hub.url, path: "README.md" }), false);
  assert.equal(await fileExists({ repo: "acme/tiny", hubUrl: hub.url, path: "README.md", revision: "v1.0" }), true);
});
