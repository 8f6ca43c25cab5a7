// `damselfly get -r s3://BUCKET/PREFIX/ -O DIR` against s3rver behind the
// verifying front: a prefix of several keys (paged listing) lands with its
// layout and bytes, the store sends each byte about once across two peers, a
// second run fetches nothing, and a glob matching nothing writes nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode } from "../../src/common/error-codes.js";
import { listS3Prefix } from "../../src/common/s3/s3-list.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { listTree } from "../helpers/store.js";
import { randomBytesSeeded } from "../helpers/origin.js";
import { S3_ACCESS_KEY, S3_SECRET, startS3Server, type S3Server } from "../helpers/s3-server.js";

const MiB = 1024 * 1024;
const objects: Record<string, Buffer> = {
  "config.json": Buffer.from('{"layers": 2}\n'),
  "weights/part-1.bin": randomBytesSeeded(3 * MiB, "s3rec-1"),
  "weights/part-2.bin": randomBytesSeeded(2 * MiB, "s3rec-2"),
  "tok en/vocab+1.txt": Buffer.from("a b c\n"),
};

describe("get -r s3://", { timeout: 240_000 }, () => {
  let s3: S3Server;
  let cluster: Cluster;
  let base: string;
  const env = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET, AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
  const get = (i: number, args: string[]) =>
    cluster.peers[i]!.get([...args, "--s3-endpoint", s3.endpoint, "--s3-path-style", "--no-progress"], { env, timeoutMs: 120_000 });

  before(async () => {
    base = mkdtempSync(join(tmpdir(), "damselfly-s3-rec-"));
    // Two keys a page: every listing here follows continuation tokens.
    s3 = await startS3Server(["models"], { pageSize: 2 });
    for (const [k, data] of Object.entries(objects)) await s3.put("models", `llm/${k}`, data);
    await s3.put("models", "llm2/other.bin", Buffer.from("not under llm/\n"));
    cluster = await startCluster({ peers: 2, seed: true });
  });
  after(async () => {
    await cluster?.stop();
    await s3?.close();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("two peers get a prefix: same layout and bytes, the store sends each byte about once", async (t) => {
    const total = Object.values(objects).reduce((n, b) => n + b.length, 0);
    const before = s3.bytesSent();
    const dirs = [join(base, "a"), join(base, "b")];
    const results = await Promise.all(dirs.map((d, i) => get(i, ["-r", "s3://models/llm/", "-O", d])));
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, `peer-${i}: ${r.stderr}`);
    for (const d of dirs) {
      assert.deepEqual(listTree(d), Object.keys(objects).sort());
      for (const [k, data] of Object.entries(objects)) assert.ok(readFileSync(join(d, k)).equals(data), `${d}/${k}`);
    }
    const served = s3.bytesSent() - before;
    t.diagnostic(`the store sent ${served} body bytes for ${total} bytes of objects, ${s3.listPages()} listing pages`);
    // Each of the two listings took every page: ceil(keys / 2) each (llm2/ is not under the prefix).
    assert.equal(s3.listPages(), 2 * Math.ceil(Object.keys(objects).length / 2));
    assert.ok(served >= total && served <= 1.1 * total + 64 * 1024, `the store sent ${served} bytes`);
  });

  test("a second run skips every file: no object bytes from the store", async () => {
    const before = s3.bytesSent();
    const r = await get(0, ["-r", "s3://models/llm/", "-O", join(base, "a")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /4 files \(4 already present\)/);
    // Only the listing's XML, far below the smallest object.
    assert.ok(s3.bytesSent() - before < 64 * 1024, `the store sent ${s3.bytesSent() - before} bytes`);
  });

  test("--include: only matching keys; a glob matching nothing is DF_ERR_SOURCE_NOT_FOUND, nothing written", async () => {
    const d = join(base, "w");
    const r = await get(1, ["-r", "s3://models/llm", "--include", "weights/*", "--exclude", "*-2.bin", "-O", d]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(listTree(d), ["weights/part-1.bin"]);
    const none = join(base, "none");
    const r2 = await get(0, ["-r", "s3://models/llm/", "--include", "*.gguf", "-O", none]);
    assert.equal(r2.code, ExitCode.NOT_FOUND, r2.stderr);
    assert.equal(existsSync(none), false);
  });

  // (s3rver cannot page: its continuation tokens use DES, which OpenSSL 3 refuses; the loop follows
  // NextContinuationToken as S3 documents it.)
  test("the listing is signed with the caller's credentials and bounded in keys", async () => {
    const opts = { endpoint: s3.endpoint, region: "", pathStyle: true };
    const keys = (await listS3Prefix("models", "llm/", opts, 100, env)).map((o) => o.key).sort();
    assert.deepEqual(
      keys,
      Object.keys(objects)
        .map((k) => `llm/${k}`)
        .sort(),
    );
    await assert.rejects(listS3Prefix("models", "llm/", opts, 2, env), { code: "DF_ERR_USAGE" });
    await assert.rejects(listS3Prefix("models", "llm/", opts, 100, { ...env, AWS_SECRET_ACCESS_KEY: "wrong" }), { code: "DF_ERR_SOURCE_AUTH" });
  });
});
