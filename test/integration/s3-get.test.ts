// `damselfly get s3://BUCKET/KEY` against a real S3-compatible store (s3rver,
// which checks SigV4): three peers at once get identical bytes and the store
// sends the object about once; a wrong secret and a missing bucket or key
// fail with their own exit codes and write nothing; an updated object is a
// new task, never the cached old bytes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { request } from "undici";
import { resolveS3, s3TaskTag } from "../../src/common/s3/s3-resolve.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "../../src/common/error-codes.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { randomBytesSeeded, sha256Hex } from "../helpers/origin.js";
import { sha256File } from "../helpers/store.js";
import { S3_ACCESS_KEY, S3_SECRET, startS3Server, type S3Server } from "../helpers/s3-server.js";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const URL_S3 = "s3://models/llm/weights-00001.safetensors";

describe("get s3://", { timeout: 180_000 }, () => {
  let s3: S3Server;
  let cluster: Cluster;
  let outDir: string;
  const env = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
  const s3Args = (): string[] => ["--s3-endpoint", s3.endpoint, "--s3-path-style", "--no-progress"];

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-s3-out-"));
    s3 = await startS3Server(["models"]);
    cluster = await startCluster({ peers: 3, seed: true });
  });
  after(async () => {
    await cluster?.stop();
    await s3?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("three concurrent gets: identical bytes, the store sends the object about once", { timeout: 90_000 }, async (t) => {
    const data = randomBytesSeeded(SIZE, "s3-v1");
    await s3.put("models", "llm/weights-00001.safetensors", data);
    const before = s3.bytesSent();
    const results = await Promise.all(
      cluster.peers.map((p, i) => p.get([URL_S3, "-O", join(outDir, `out-${i}.bin`), ...s3Args()], { env, timeoutMs: 80_000 })),
    );
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
    for (let i = 0; i < results.length; i++) assert.equal(await sha256File(join(outDir, `out-${i}.bin`)), sha256Hex(data));
    const served = s3.bytesSent() - before;
    t.diagnostic(`the store sent ${served} body bytes for a ${SIZE}-byte object (${(served / SIZE).toFixed(3)} x)`);
    assert.ok(served >= SIZE && served <= 1.1 * SIZE, `the store sent ${served} bytes (${(served / SIZE).toFixed(2)} x the object)`);
    // What the daemons keep names the object, never the signature.
    const kept = [...cluster.peers, cluster.seed!].flatMap((d) => jsonFiles(d.dataDir));
    assert.ok(
      kept.some((f) => f.endsWith("task.json")),
      "no task.json to check",
    );
    for (const d of [...cluster.peers, cluster.seed!]) {
      for (const f of jsonFiles(d.dataDir)) assert.doesNotMatch(readFileSync(f, "utf8"), /X-Amz-(Signature|Credential)/i, f);
    }
  });

  test("the test store's front checks presigned signatures (a URL signed with another secret is refused)", async () => {
    const good = await resolveS3(URL_S3, { endpoint: s3.endpoint, region: "", pathStyle: true }, env);
    const ok = await request(good.url, { headers: { range: "bytes=0-0" } });
    await ok.body.dump();
    assert.equal(ok.statusCode, 206);
    const wrong = new SignatureV4({
      service: "s3",
      region: "us-east-1",
      credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: "x" },
      sha256: Sha256,
      uriEscapePath: false,
    });
    const u = new URL(good.url);
    const unsent = new Set(["x-amz-content-sha256"]);
    const req = {
      method: "GET",
      protocol: "http:",
      hostname: u.hostname,
      port: Number(u.port),
      path: u.pathname,
      query: {},
      headers: { host: u.host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
    };
    const bad = await wrong.presign(req, { expiresIn: 60, unhoistableHeaders: unsent, unsignableHeaders: unsent });
    const badUrl = new URL(u.origin + u.pathname);
    for (const [k, v] of Object.entries(bad.query ?? {})) badUrl.searchParams.set(k, String(v));
    const res = await request(badUrl);
    await res.body.dump();
    assert.equal(res.statusCode, 403);
  });

  test("a cached object is served only on the caller's own valid signature (a forged one is refused, nothing written)", async () => {
    // Peer 0 holds the object (first test). The task is named without the signature, so a caller
    // who knows the key and ETag could name it with any signature: the daemon asks the store first.
    const good = await resolveS3(URL_S3, { endpoint: s3.endpoint, region: "", pathStyle: true }, env);
    const tag = s3TaskTag("", good.identity);
    const forged = new URL(good.url);
    forged.searchParams.set("X-Amz-Signature", "0".repeat(64));
    const out = join(outDir, "forged.bin");
    const before = s3.bytesSent();
    const r = await cluster.peers[0]!.get([forged.toString(), "--tag", tag, "-O", out, "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(r.code, ExitCode.AUTH, r.stderr);
    assert.match(r.stderr, /DF_ERR_SOURCE_AUTH/);
    assert.equal(existsSync(out), false);
    // The caller's own valid URL: the local copy, after a one-byte check.
    const ok = await cluster.peers[0]!.get([good.url, "--tag", tag, "-O", out, "--no-progress"], { timeoutMs: 30_000 });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /from origin 0 B/);
    assert.ok(s3.bytesSent() - before < 64 * 1024, `the store sent ${s3.bytesSent() - before} bytes`);
  });

  test("a wrong secret is refused: auth exit code, no file", async () => {
    const out = join(outDir, "wrong-secret.bin");
    const r = await cluster.peers[0]!.get([URL_S3, "-O", out, ...s3Args()], { env: { ...env, AWS_SECRET_ACCESS_KEY: "not-the-secret" } });
    assert.equal(r.code, ExitCode.AUTH, r.stderr);
    assert.match(r.stderr, /DF_ERR_SOURCE_AUTH/);
    assert.ok(!r.stderr.includes("not-the-secret"), r.stderr);
    assert.equal(existsSync(out), false);
  });

  test("a missing key or bucket: not-found exit code, no file", async () => {
    for (const url of ["s3://models/llm/absent.bin", "s3://no-such-bucket/llm/weights-00001.safetensors"]) {
      const out = join(outDir, "absent.bin");
      const r = await cluster.peers[1]!.get([url, "-O", out, ...s3Args()], { env });
      assert.equal(r.code, ExitCode.NOT_FOUND, `${url}: ${r.stderr}`);
      assert.match(r.stderr, /DF_ERR_SOURCE_NOT_FOUND/);
      assert.equal(existsSync(out), false);
    }
  });

  test("a caller without credentials: the daemon signs with its own and its s3 defaults", { timeout: 60_000 }, async () => {
    const noCreds = { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
    const signing = await cluster.addDaemon({
      name: "s3-signing",
      args: ["--s3-endpoint", s3.endpoint],
      env: { ...env, DAMSELFLY_DAEMON_SOURCE_S3_PATH_STYLE: "true" },
    });
    const out = join(outDir, "daemon-signed.bin");
    const r = await signing.get([URL_S3, "-O", out, "--no-progress"], { env: noCreds, timeoutMs: 50_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), await sha256File(join(outDir, "out-0.bin")));
    // A daemon with no credentials of its own refuses, and says why.
    const out2 = join(outDir, "unsigned.bin");
    const r2 = await cluster.peers[2]!.get([URL_S3, "-O", out2, "--no-progress"], { env: noCreds });
    assert.equal(r2.code, ExitCode.AUTH, r2.stderr);
    assert.match(r2.stderr, /DF_ERR_SOURCE_AUTH.*no S3 credentials/s);
    assert.equal(existsSync(out2), false);
  });

  test("an updated object (new ETag) is a new task: the new bytes, from the store", { timeout: 60_000 }, async () => {
    const data = randomBytesSeeded(SIZE, "s3-v2");
    await s3.put("models", "llm/weights-00001.safetensors", data);
    const before = s3.bytesSent();
    const out = join(outDir, "updated.bin");
    const r = await cluster.peers[0]!.get([URL_S3, "-O", out, ...s3Args()], { env, timeoutMs: 50_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), sha256Hex(data), "the peer served its cached copy of the old object");
    assert.ok(s3.bytesSent() - before >= SIZE, "the new object came from the store");
  });
});

function jsonFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".json"))
    .map((e) => join(e.parentPath, e.name));
}
