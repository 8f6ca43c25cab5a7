// Three peers of one cluster run `get -r` on the same "model" at once, from
// an S3 store and from the Hub: every file byte-identical, and the origin
// (the store; the hub plus its CDN) sent each file's bytes exactly once —
// the other copies came from peers. Then a file changed upstream (a new
// commit) is fetched again from the origin into a fresh directory while the
// unchanged ones, the same content under a new revision, come from peers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { type HubFixture, type HubRepo, startHub } from "../helpers/hub.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";
import { type RunResult, spawnDamselfly } from "../helpers/procs.js";
import { S3_ACCESS_KEY, S3_SECRET, startS3Server, type S3Server } from "../helpers/s3-server.js";
import { listTree } from "../helpers/store.js";

const KiB = 1024;
const MiB = 1024 * KiB;
// Mixed sizes in nested folders; the largest is 7 pieces of the 512 KiB minimum.
const model: Record<string, Buffer> = {
  "config.json": Buffer.from('{"hidden_size": 64, "layers": 2}\n'),
  "weights/shard-1.bin": randomBytesSeeded(3.5 * MiB, "swarm-1"),
  "weights/shard-2.bin": randomBytesSeeded(1 * MiB + 17, "swarm-2"),
  "weights/extra/deep/embed.bin": randomBytesSeeded(700 * KiB, "swarm-3"),
  "tokenizer/vocab.txt": Buffer.from("a\nb\nc\nd\n"),
};
const lfs = new Set(["weights/shard-1.bin", "weights/shard-2.bin", "weights/extra/deep/embed.bin"]);
const modelBytes = Object.values(model).reduce((n, b) => n + b.length, 0);
const sum = (m: Map<string, number>) => [...m.values()].reduce((n, v) => n + v, 0);

function assertTree(dir: string, files: Record<string, Buffer>): void {
  assert.deepEqual(listTree(dir), Object.keys(files).sort());
  for (const [p, data] of Object.entries(files)) assert.ok(readFileSync(join(dir, p)).equals(data), `${dir}/${p} differs from the source`);
}

// The files whose resume marker (DIR/.cache/damselfly/PATH.id) exists: fetched in full.
function finishedIn(markers: string): string[] {
  if (!existsSync(markers)) return [];
  return readdirSync(markers)
    .filter((n) => n.endsWith(".id"))
    .map((n) => n.slice(0, -3));
}

function assertAllOk(results: RunResult[]): void {
  for (const [i, r] of results.entries()) {
    assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
    assert.match(r.stderr, /5 files \(0 already present\)/);
  }
}

describe("get -r: three peers at once", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let s3: S3Server;
  let hub: HubFixture;
  let repo: HubRepo;
  let base: string;
  const s3Env = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
  const getS3 = (i: number, dir: string) =>
    cluster.peers[i]!.get(["-r", "s3://models/llm/", "-O", dir, "--s3-endpoint", s3.endpoint, "--s3-path-style", "--no-progress"], {
      env: s3Env,
      timeoutMs: 90_000,
    });
  const getHf = (i: number, dir: string) =>
    cluster.peers[i]!.get(["-r", "hf://acme/swarm", "-O", dir, "--no-progress"], { env: { HF_ENDPOINT: hub.url }, timeoutMs: 90_000 });

  before(async () => {
    base = mkdtempSync(join(tmpdir(), "damselfly-rec-swarm-"));
    s3 = await startS3Server(["models"]);
    for (const [k, data] of Object.entries(model)) await s3.put("models", `llm/${k}`, data);
    hub = await startHub();
    repo = hub.repos.create("model", "acme/swarm");
    const spec: Record<string, Buffer | { data: Buffer; lfs: boolean }> = {};
    for (const [p, data] of Object.entries(model)) spec[p] = lfs.has(p) ? { data, lfs: true } : data;
    repo.commit(spec);
    cluster = await startCluster({ peers: 3, seed: true });
  });
  after(async () => {
    await cluster?.stop();
    await s3?.close();
    await hub?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("s3://: every file identical on the three peers; the store sent each object's bytes once", async (t) => {
    const dirs = [0, 1, 2].map((i) => join(base, `s3-${i}`));
    assertAllOk(await Promise.all(dirs.map((d, i) => getS3(i, d))));
    for (const d of dirs) assertTree(d, model);
    for (const [k, data] of Object.entries(model)) assert.equal(s3.bytesSentFor("models", `llm/${k}`), data.length, `the store's bytes for ${k}`);
    // Beyond the objects: only the three listings' XML.
    const overhead = s3.bytesSent() - modelBytes;
    t.diagnostic(`the store sent ${s3.bytesSent()} bytes for a ${modelBytes}-byte model (${overhead} of listings)`);
    assert.ok(overhead >= 0 && overhead < 64 * KiB, `the store sent ${overhead} bytes besides the objects`);
  });

  test("hf://: every file identical on the three peers; the CDN and the hub sent each file's bytes once", async (t) => {
    const dirs = [0, 1, 2].map((i) => join(base, `hf-${i}`));
    assertAllOk(await Promise.all(dirs.map((d, i) => getHf(i, d))));
    for (const d of dirs) assertTree(d, model);
    for (const p of lfs) assert.equal(hub.cdnBytesFor(sha256Hex(model[p]!)), model[p]!.length, `the CDN's bytes for ${p}`);
    const lfsBytes = [...lfs].reduce((n, p) => n + model[p]!.length, 0);
    t.diagnostic(`the CDN sent ${sum(hub.cdnBytes)} bytes, the hub ${sum(hub.hubBytes)} file bytes, for a ${modelBytes}-byte model`);
    assert.equal(sum(hub.cdnBytes), lfsBytes);
    // The hub's file bytes are the plain (non-LFS) files, once each (its API answers are not counted).
    assert.equal(sum(hub.hubBytes), modelBytes - lfsBytes);
  });

  // What the fresh-directory run after the new commit took from the hub's plain-file bytes.
  let plainFromHub = -1;
  const vocab = Buffer.from("a\nb\nc\nd\ne\n");

  test("a file changed upstream is fetched again from the origin; the unchanged weights come from peers", async () => {
    const changed = randomBytesSeeded(model["weights/shard-2.bin"]!.length, "swarm-2-v2");
    repo.commit({ "weights/shard-2.bin": { data: changed, lfs: true }, "tokenizer/vocab.txt": vocab });
    const cdnBefore = new Map([...lfs].map((p) => [p, hub.cdnBytesFor(sha256Hex(model[p]!))]));
    const cdnTotal = sum(hub.cdnBytes);
    const hubFiles = sum(hub.hubBytes);
    const d = join(base, "hf-fresh");
    const r = await getHf(0, d);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /5 files \(0 already present\)/);
    assertTree(d, { ...model, "weights/shard-2.bin": changed, "tokenizer/vocab.txt": vocab });
    // The new LFS object, once, from the CDN ...
    assert.equal(hub.cdnBytesFor(sha256Hex(changed)), changed.length);
    assert.equal(sum(hub.cdnBytes) - cdnTotal, changed.length);
    // ... and not one byte of the unchanged weights: the same sha256 at the new commit is the same task.
    for (const p of lfs) assert.equal(hub.cdnBytesFor(sha256Hex(model[p]!)), cdnBefore.get(p), p);
    plainFromHub = sum(hub.hubBytes) - hubFiles;
  });

  // A plain (non-LFS) file's task is keyed by its git blob id (checked by the
  // daemon), like a weight by its sha256: the unchanged config.json at the
  // new commit is the same task; only the changed vocab.txt comes from the hub.
  test("an unchanged plain file at a new commit is not fetched again", () => {
    assert.equal(plainFromHub, vocab.length);
  });

  test("get -r killed mid-set, then run again: the finished files are kept, not fetched again, and the set completes", async () => {
    // Four 1 MiB weights, one at a time at 1 MiB/s: the run is killed after the first lands.
    const parts: Record<string, Buffer> = {};
    for (let i = 0; i < 4; i++) parts[`part-${i}.bin`] = randomBytesSeeded(MiB, `swarm-resume-${i}`);
    const spec: Record<string, { data: Buffer; lfs: boolean }> = {};
    for (const [p, data] of Object.entries(parts)) spec[p] = { data, lfs: true };
    hub.repos.create("model", "acme/resume").commit(spec);
    const d = join(base, "resume");
    const args = ["-r", "hf://acme/resume", "-O", d, "--concurrency", "1", "--rate-limit", "1MiB", "--no-progress"];
    const proc = spawnDamselfly(["get", ...args, "--daemon", cluster.peers[2]!.apiUrl], { env: { HF_ENDPOINT: hub.url }, name: "get-r" });
    const markers = join(d, ".cache", "damselfly");
    // Watches the output: a file is finished once its resume marker is written (after the file).
    for (let i = 0; i < 1_500 && proc.running && finishedIn(markers).length === 0; i++) await sleep(20);
    await proc.stop("SIGKILL", 0);
    const finished = finishedIn(markers);
    assert.ok(finished.length >= 1 && finished.length < 4, `killed after ${finished.length} of 4 files`);
    const kept = new Map(finished.map((p) => [p, statSync(join(d, p)).ino]));
    const cdn = new Map(finished.map((p) => [p, hub.cdnBytesFor(sha256Hex(parts[p]!))]));

    const r = await cluster.peers[2]!.get(args, { env: { HF_ENDPOINT: hub.url }, timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const present = Number(/4 files \((\d+) already present\)/.exec(r.stderr)?.[1] ?? -1);
    assert.ok(present >= finished.length, r.stderr);
    assertTree(d, parts);
    for (const p of finished) {
      assert.equal(statSync(join(d, p)).ino, kept.get(p), `${p} was written again`);
      assert.equal(hub.cdnBytesFor(sha256Hex(parts[p]!)), cdn.get(p), `${p} came from the CDN again`);
    }
  });
});
