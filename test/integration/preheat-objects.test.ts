// `damselfly preheat` of s3:// and hf:// URLs, recursive ones too, through a
// real manager, scheduler and seed peer: the manager lists and resolves the
// URLs itself (its own AWS credentials; the CLI has none), the seed fetches
// each file once, and a later `get -r` of the same URL on two peers costs the
// store, the hub and its CDN no file bytes. A hub token given with the job
// reaches a private repository and is in no database row and no log; without
// it, or with a wrong S3 secret, an unknown bucket or revision, or a glob
// that matches nothing, the job fails with a clear message and the CLI exits
// with the matching code.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "../../src/common/error-codes.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { type HubFixture, startHub } from "../helpers/hub.js";
import { startManager, type ManagerHandle, waitForSchedulers } from "../helpers/manager.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";
import { runDamselfly } from "../helpers/procs.js";
import { S3_ACCESS_KEY, S3_SECRET, startS3Server, type S3Server } from "../helpers/s3-server.js";
import { listTree } from "../helpers/store.js";

const MiB = 1024 * 1024;
const HUB_TOKEN = "hf_preheat_Secret_Token_93";
const objects: Record<string, Buffer> = {
  "config.json": Buffer.from('{"layers": 2}\n'),
  "weights/part-1.bin": randomBytesSeeded(3 * MiB, "pre-s3-1"),
  "weights/part-2.bin": randomBytesSeeded(2 * MiB, "pre-s3-2"),
  "notes.txt": Buffer.from("not preheated\n"),
};
const hubFiles: Record<string, Buffer> = {
  "config.json": Buffer.from('{"hidden_size": 64}\n'),
  "model-00001.safetensors": randomBytesSeeded(2 * MiB, "pre-hf-1"),
  "model-00002.safetensors": randomBytesSeeded(1 * MiB, "pre-hf-2"),
};
const lfs = ["model-00001.safetensors", "model-00002.safetensors"];
const awsEnv = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };

describe("preheat s3:// and hf://", { timeout: 300_000 }, () => {
  let s3: S3Server;
  let hub: HubFixture;
  let manager: ManagerHandle;
  let cluster: Cluster;
  let pat: string;
  let base: string;
  const preheat = (args: string[], env: Record<string, string> = {}, m: ManagerHandle = manager) =>
    runDamselfly(["preheat", ...args, "--manager", m.url], {
      env: { DAMSELFLY_PREHEAT_TOKEN: pat, HF_TOKEN: "", AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", ...env },
      timeoutMs: 120_000,
    });
  const get = (i: number, args: string[], env: Record<string, string>) =>
    cluster.peers[i]!.get([...args, "--no-progress"], { env: { HF_ENDPOINT: hub.url, ...awsEnv, ...env }, timeoutMs: 120_000 });
  const cdnTotal = () => lfs.reduce((n, p) => n + hub.cdnBytesFor(sha256Hex(hubFiles[p]!)), 0);
  const hubResolveGets = () => hub.requests.filter((r) => r.server === "hub" && r.method === "GET" && r.url.includes("/resolve/")).length;

  before(async () => {
    base = mkdtempSync(join(tmpdir(), "damselfly-preheat-obj-"));
    s3 = await startS3Server(["models"]);
    for (const [k, data] of Object.entries(objects)) await s3.put("models", `llm/${k}`, data);
    hub = await startHub();
    const spec = Object.fromEntries(Object.entries(hubFiles).map(([p, data]) => [p, lfs.includes(p) ? { data, lfs: true } : data]));
    hub.repos.create("model", "acme/llm").commit(spec);
    hub.repos.create("model", "acme/secret", { private: true, tokens: [HUB_TOKEN] }).commit({
      "config.json": Buffer.from('{"private": true}\n'),
      "w.bin": { data: randomBytesSeeded(MiB, "pre-hf-secret"), lfs: true },
    });
    // Its tree is public, its files need a granted token: each file's task fails, not the listing.
    hub.repos.create("model", "acme/gated", { gated: "manual", tokens: ["hf_granted"] }).commit({ "w.bin": { data: randomBytesSeeded(4096, "g"), lfs: true } });
    // The manager's own S3 credentials and endpoints; the CLI has none.
    manager = await startManager({ env: awsEnv, args: ["--s3-endpoint", s3.endpoint, "--hf-endpoint", hub.url, "--log-level", "debug"] });
    const root = await manager.signin();
    const expired_at = new Date(Date.now() + 3_600_000).toISOString();
    pat = (await manager.api("POST", "/api/v1/personal-access-tokens", { token: root, body: { name: "ci", scopes: ["job"], expired_at } })).body.token;
    cluster = await startCluster({ peers: 2, logLevel: "debug", schedulerArgs: ["--manager", manager.url, "--manager-interval", "500ms"] });
    await waitForSchedulers(manager, root);
  });
  after(async () => {
    await cluster?.stop();
    await manager?.stop();
    await hub?.close();
    await s3?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("preheat -r s3://: each selected object leaves the store once; get -r on two peers then costs it no object bytes", async (t) => {
    const wanted = Object.keys(objects).filter((k) => !k.endsWith(".txt"));
    const total = wanted.reduce((n, k) => n + objects[k]!.length, 0);
    const before = s3.bytesSent();
    const r = await preheat(["-r", "s3://models/llm/", "--exclude", "*.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /cluster 1: 3 task\(s\) preheated, 0 failed/);
    const served = s3.bytesSent() - before;
    t.diagnostic(`preheat: the store sent ${served} bytes for ${total} bytes of objects`);
    assert.ok(served >= total && served <= total + 64 * 1024, `the store sent ${served} bytes`);

    const mid = s3.bytesSent();
    const dirs = [join(base, "s3-a"), join(base, "s3-b")];
    const gets = await Promise.all(dirs.map((d, i) => get(i, ["-r", "s3://models/llm/", "--exclude", "*.txt", "-O", d, "--s3-endpoint", s3.endpoint], {})));
    for (const [i, g] of gets.entries()) {
      assert.equal(g.code, 0, `peer-${i}: ${g.stderr}`);
      assert.match(g.stderr, /from origin 0 B/, g.stderr);
    }
    for (const d of dirs) {
      assert.deepEqual(listTree(d), wanted.sort());
      for (const k of wanted) assert.ok(readFileSync(join(d, k)).equals(objects[k]!), `${d}/${k}`);
    }
    // The listings' XML and the HEADs only: far below the smallest object (2 MiB).
    t.diagnostic(`get -r after preheat: the store sent ${s3.bytesSent() - mid} bytes`);
    assert.ok(s3.bytesSent() - mid < 64 * 1024, `the store sent ${s3.bytesSent() - mid} bytes`);
  });

  test("preheat s3://BUCKET/KEY: one object; the job shows the s3:// URL, no signature", async () => {
    const r = await preheat(["s3://models/llm/notes.txt"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /cluster 1: 1 task\(s\) preheated, 0 failed/);
    const jobs = (await manager.api("GET", "/oapi/v1/jobs?limit=100", { token: pat })).body as { args: Record<string, unknown> }[];
    const job = jobs.find((j) => j.args.url === "s3://models/llm/notes.txt");
    assert.ok(job);
    assert.doesNotMatch(JSON.stringify(job), /X-Amz-Signature/i);
  });

  test("preheat -r hf://: LFS bytes leave the CDN once; get -r on two peers then fetches nothing from the hub or CDN", async (t) => {
    const lfsBytes = lfs.reduce((n, p) => n + hubFiles[p]!.length, 0);
    const r = await preheat(["-r", "hf://acme/llm", "--hf-revision", "main"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /cluster 1: 3 task\(s\) preheated, 0 failed/);
    t.diagnostic(`preheat: the CDN sent ${cdnTotal()} bytes for ${lfsBytes} LFS bytes`);
    assert.ok(cdnTotal() >= lfsBytes && cdnTotal() <= lfsBytes + 64 * 1024, `the CDN sent ${cdnTotal()} bytes`);

    const cdn = cdnTotal();
    const resolves = hubResolveGets();
    const dirs = [join(base, "hf-a"), join(base, "hf-b")];
    const gets = await Promise.all(dirs.map((d, i) => get(i, ["-r", "hf://acme/llm", "-O", d], {})));
    for (const [i, g] of gets.entries()) {
      assert.equal(g.code, 0, `peer-${i}: ${g.stderr}`);
      assert.match(g.stderr, /from origin 0 B/, g.stderr);
    }
    for (const d of dirs) for (const [p, data] of Object.entries(hubFiles)) assert.ok(readFileSync(join(d, p)).equals(data), `${d}/${p}`);
    assert.equal(cdnTotal(), cdn, "no CDN bytes after the preheat");
    assert.equal(hubResolveGets(), resolves, "no file bytes from the hub after the preheat");
  });

  test("a private repository: preheated with the job's hub token, which is in no row and no log; without it the job fails with AUTH", async () => {
    const r = await preheat(["-r", "hf://acme/secret"], { HF_TOKEN: HUB_TOKEN });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /2 task\(s\) preheated, 0 failed/);
    const jobs = (await manager.api("GET", "/oapi/v1/jobs?limit=100", { token: pat })).body as { args: Record<string, unknown> }[];
    const job = jobs.find((j) => j.args.url === "hf://acme/secret");
    assert.equal(job?.args.hf_token, "[redacted]");
    // The plain file was fetched by the seed with the token; a peer's get is a P2P hit.
    const g = await get(0, ["hf://acme/secret/config.json", "-O", join(base, "secret-config.json")], { HF_TOKEN: HUB_TOKEN });
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stderr, /from origin 0 B/);

    const denied = await preheat(["-r", "hf://acme/secret"]);
    assert.equal(denied.code, ExitCode.AUTH, denied.stderr);
    assert.match(denied.stderr, /DF_ERR_SOURCE_AUTH.*token/);

    // Not in the database (every table, WAL included) nor any process's output.
    for (const f of readdirSync(manager.dataDir)) {
      assert.ok(!readFileSync(join(manager.dataDir, f)).includes(HUB_TOKEN), `the token is in ${f}`);
    }
    // Nor in the seed peer's store (task metadata keeps no request headers).
    for (const f of readdirSync(cluster.seed!.dataDir, { recursive: true, encoding: "utf8" })) {
      const path = join(cluster.seed!.dataDir, f);
      if (statSync(path).isFile()) assert.ok(!readFileSync(path).includes(HUB_TOKEN), `the token is in the seed's ${f}`);
    }
    for (const p of [manager.proc, ...cluster.schedulers.map((s) => s.proc), ...cluster.daemons.map((d) => d.proc)]) {
      assert.ok(!(p.stdout() + p.stderr()).includes(HUB_TOKEN), `the token is in the output of ${p.name}`);
    }
  });

  test("bad input: each a FAILED job with a clear message and the CLI's matching exit code", async () => {
    const cases: [string[], number, RegExp][] = [
      [["-r", "s3://nobucket/x/"], ExitCode.NOT_FOUND, /no such bucket/],
      [["s3://models/llm/missing.bin"], ExitCode.NOT_FOUND, /no such bucket or key/],
      [["-r", "hf://acme/llm", "--hf-revision", "no-such-branch"], ExitCode.NOT_FOUND, /RevisionNotFound/],
      [["-r", "s3://models/llm/", "--include", "*.gguf"], ExitCode.NOT_FOUND, /matches include\/exclude/],
      [["-r", "hf://acme/llm", "--include", "*.gguf"], ExitCode.NOT_FOUND, /matches include\/exclude/],
      [["-r", "hf://acme/gated"], ExitCode.AUTH, /failed: hf:\/\/acme\/gated\/w\.bin on -: DF_ERR_SOURCE_AUTH/],
      [["s3://models/llm/", "--no-wait"], ExitCode.USAGE, /-r for a prefix/],
      [["https://example.com/x.bin", "--include", "*.bin"], ExitCode.USAGE, /apply to s3:\/\/ and hf:\/\//],
    ];
    for (const [args, code, why] of cases) {
      const r = await preheat(args);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout.toString() + r.stderr, why, args.join(" "));
    }
    // The API checks the same before a job exists.
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ type: "file", url: "s3://models/llm/", include: ["*.bin"] }, /include and exclude need recursive/],
      [{ type: "file", url: "s3://models/llm/x", hf_token: "t" }, /apply to hf:\/\/ URLs/],
      [{ type: "file", url: "http://127.0.0.1:9/x", recursive: true }, /apply to s3:\/\/ and hf:\/\/ URLs/],
      [{ type: "image", url: "hf://acme/llm/config.json" }, /preheated as type file/],
      [{ type: "file", url: "hf://acme/llm" }, /DF_ERR_INVALID_URL|expected hf:\/\//],
    ];
    for (const [args, why] of refused) {
      const r = await manager.api("POST", "/oapi/v1/jobs", { token: pat, body: { type: "preheat", args } });
      assert.equal(r.status, 400, JSON.stringify(args));
      assert.match(JSON.stringify(r.body), why, JSON.stringify(args));
    }
    // The manager's own S3 secret is wrong: refused by the store.
    const wrong = await startManager({ env: { ...awsEnv, AWS_SECRET_ACCESS_KEY: "wrong-secret" }, args: ["--s3-endpoint", s3.endpoint] });
    try {
      const root = await wrong.signin();
      const expired_at = new Date(Date.now() + 600_000).toISOString();
      const token = (await wrong.api("POST", "/api/v1/personal-access-tokens", { token: root, body: { name: "ci", scopes: ["job"], expired_at } })).body.token;
      const r = await preheat(["-r", "s3://models/llm/"], { DAMSELFLY_PREHEAT_TOKEN: token }, wrong);
      assert.equal(r.code, ExitCode.AUTH, r.stderr);
      assert.match(r.stderr, /S3 refused to list s3:\/\/models/);
      const r2 = await preheat(["s3://models/llm/config.json"], { DAMSELFLY_PREHEAT_TOKEN: token }, wrong);
      assert.equal(r2.code, ExitCode.AUTH, r2.stderr);
    } finally {
      await wrong.stop();
    }
  });
});
