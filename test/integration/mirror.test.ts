import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { request } from "undici";
import { startCluster } from "../helpers/cluster.js";
import { tempDir, logTail, pollUntil, taskDir } from "../helpers/store.js";
import { taskId } from "../../src/common/task-id.js";
import { assertLayersSentOnce, directLayerGets, pullOk, registryWithImage, twoContainerdNodes } from "../helpers/mirror-setup.js";

const MiB = 1024 * 1024;

async function fetchBytes(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; trailers: Record<string, unknown>; body: Buffer }> {
  const r = await request(url, { headers });
  const chunks: Buffer[] = [];
  for await (const c of r.body) chunks.push(c as Buffer);
  return { status: r.statusCode, headers: r.headers, trailers: r.trailers, body: Buffer.concat(chunks) };
}

function sha256(b: Buffer): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

// Every file under dir, as text (binary files included, searched as latin1).
function grepTree(dir: string, needles: string[]): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const text = readFileSync(p).toString("latin1");
        for (const n of needles) if (text.includes(n)) hits.push(`${p}: ${n.slice(0, 6)}…`);
      }
    }
  };
  walk(dir);
  return hits;
}

describe("registry mirror with containerd", () => {
  test("two containerd nodes pull through their daemons at once: both unpack, each layer leaves the registry once", async (t) => {
    const dir = tempDir(t, "dfm-");
    const { registry, image, ref } = await registryWithImage(t, dir, { layers: [12 * MiB, 6 * MiB, 3 * MiB] });
    const { cluster, nodes } = await twoContainerdNodes(t, dir, registry.url);
    const [n1, n2] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const [p1, p2, c1, hosts1] = [n1.daemon, n2.daemon, n1.containerd, n1.hostsDir];

    await Promise.all([pullOk(c1, ref, hosts1), pullOk(n2.containerd, ref, n2.hostsDir)]);

    const log = await registry.accessLog();
    assert.deepEqual(
      directLayerGets(log, image),
      [],
      `containerd fetched layers from the registry itself: the mirror did not serve them\n${logTail(p1, 40)}\n${logTail(p2, 40)}`,
    );
    assertLayersSentOnce(registry, image, logTail(cluster.seed!));
    for (const p of [p1, p2]) {
      assert.ok(
        p.proc.logs.some((l) => l.msg === "proxy: served from P2P"),
        `${p.name} served nothing from P2P\n${logTail(p)}`,
      );
    }

    // A second pull on a node whose daemon holds the layers costs the
    // registry no layer bytes at all.
    await c1.removeImage(ref);
    await registry.accessLog();
    registry.resetAccessLog();
    await pullOk(c1, ref, hosts1);
    const again = await registry.accessLog();
    for (const l of image.layers)
      assert.equal(registry.blobBytesSent(l.digest), 0, `layer ${l.digest} fetched again: ${JSON.stringify(again.filter((e) => e.path.includes(l.digest)))}`);
  });

  test("range requests through the mirror return exactly the registry's bytes, cold (forwarded) and from the store (206 from P2P)", async (t) => {
    const dir = tempDir(t, "dfm-");
    const { registry, image } = await registryWithImage(t, dir, { layers: [5 * MiB], seed: "ranges" });
    const cluster = await startCluster({ peers: 1, t });
    const p = cluster.peers[0]!;
    const layer = image.layers[0]!;
    const blobPath = `/v2/test/app/blobs/${layer.digest}`;
    const direct = await fetchBytes(`${registry.url}${blobPath}`);
    assert.equal(direct.status, 200);
    const mirror = `${p.proxyUrl}${blobPath}?ns=${encodeURIComponent(registry.hostPort)}`;
    const ranges: [string, number, number][] = [
      ["bytes=0-99", 0, 100],
      ["bytes=100-", 100, layer.size],
      [`bytes=-100`, layer.size - 100, layer.size],
    ];
    const checkRanges = async (expectCache: string | undefined) => {
      for (const [range, from, to] of ranges) {
        const r = await fetchBytes(mirror, { range });
        assert.equal(r.status, 206, `${range}: status ${r.status}`);
        assert.equal(r.headers["content-range"], `bytes ${from}-${to - 1}/${layer.size}`, range);
        assert.ok(r.body.equals(direct.body.subarray(from, to)), `${range}: bytes differ from the registry's`);
        assert.equal(r.headers["x-damselfly-cache"], expectCache, `${range}: x-damselfly-cache`);
      }
    };
    // Cold: the daemon holds nothing, so only the ranges themselves are fetched.
    // (The registry logs a request after answering it: let the direct GET's
    // line arrive before the count starts.)
    await registry.accessLog();
    registry.resetAccessLog();
    await checkRanges(undefined);
    await registry.accessLog();
    assert.ok(registry.blobBytesSent(layer.digest) < 300 + layer.size, "cold ranges fetched more than the ranges");

    // Whole blob through the daemon, then the same ranges come from the
    // store. A client that accepts trailers learns where the bytes came from.
    const whole = await fetchBytes(mirror, { te: "trailers" });
    assert.equal(whole.status, 200);
    // Cold: the seed peer fetched it and the peer took it from there, or (if
    // the seed had not announced itself yet) the peer fetched it itself.
    const fromPeers = Number(whole.trailers["x-damselfly-bytes-from-peers"]);
    const fromOrigin = Number(whole.trailers["x-damselfly-bytes-from-origin"]);
    assert.equal(fromPeers + fromOrigin, layer.size, JSON.stringify(whole.trailers));
    assert.equal(sha256(whole.body), layer.digest);
    assert.equal(whole.headers["docker-content-digest"], layer.digest);
    assert.match(String(whole.headers["x-damselfly-task-id"]), /^[0-9a-f]{64}$/);
    await registry.accessLog();
    registry.resetAccessLog();
    await checkRanges("hit");
    await registry.accessLog();
    assert.equal(registry.blobBytesSent(layer.digest), 0, "ranges of a stored blob went to the registry");

    const beyond = await fetchBytes(mirror, { range: `bytes=${layer.size}-` });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers["content-range"], `bytes */${layer.size}`);
  });

  test("private registry: pulls pass credentials through, and a client without valid credentials cannot read a cached blob", async (t) => {
    const dir = tempDir(t, "dfm-");
    const auth = { user: "alice", password: "pw-Very-Secret-42" };
    const { registry, image, ref } = await registryWithImage(t, dir, { layers: [8 * MiB, 4 * MiB], auth, seed: "private" });
    const { cluster, nodes } = await twoContainerdNodes(t, dir, registry.url);
    const p2 = nodes[1]!.daemon;
    for (const n of nodes) await pullOk(n.containerd, ref, n.hostsDir, auth);
    const log = await registry.accessLog();
    assert.deepEqual(directLayerGets(log, image), [], "containerd fetched layers from the registry itself");
    assertLayersSentOnce(registry, image);

    // Both daemons now hold every layer. Another tenant asks for one.
    const layer = image.layers[0]!;
    const url = `${p2.proxyUrl}/v2/test/app/blobs/${layer.digest}?ns=${encodeURIComponent(registry.hostPort)}`;
    const basic = (u: string, pw: string) => "Basic " + Buffer.from(`${u}:${pw}`).toString("base64");
    const anonymous = await fetchBytes(url);
    assert.equal(anonymous.status, 401, "a client without credentials must get the registry's 401");
    assert.ok(anonymous.body.length < 1000 && !anonymous.body.includes(Buffer.from("ustar")), "blob bytes leaked to an anonymous client");
    assert.match(String(anonymous.headers["www-authenticate"]), /Basic realm=/, "the registry's challenge reaches the client unchanged");
    const wrong = await fetchBytes(url, { authorization: basic("alice", "wrong-password") });
    assert.equal(wrong.status, 401, "wrong credentials must not read the cached blob");
    const mallory = await fetchBytes(url, { authorization: basic("mallory", auth.password) });
    assert.equal(mallory.status, 401);
    const ok = await fetchBytes(url, { authorization: basic(auth.user, auth.password) });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers["x-damselfly-cache"], "hit");
    assert.equal(sha256(ok.body), layer.digest);

    // Credentials are never written to disk or logs.
    const secrets = [auth.password, Buffer.from(`${auth.user}:${auth.password}`).toString("base64")];
    assert.deepEqual(grepTree(cluster.dataRoot, secrets), [], "credentials found in a daemon's data dir");
    for (const d of cluster.daemons)
      for (const s of secrets) assert.ok(!d.proc.stderr().includes(s) && !d.proc.stdout().includes(s), `${d.name} logged a credential`);
    for (const s of secrets) assert.ok(!cluster.scheduler.proc.stderr().includes(s), "the scheduler logged a credential");
  });

  test("a registry serving bytes that do not match the digest: the client never gets a complete response, no daemon keeps the copy", async (t) => {
    const dir = tempDir(t, "dfm-");
    const { registry, image } = await registryWithImage(t, dir, { layers: [6 * MiB], seed: "rotten" });
    const cluster = await startCluster({ peers: 1, t });
    const p = cluster.peers[0]!;
    const layer = image.layers[0]!;
    const hex = layer.digest.slice("sha256:".length);
    const stored = join(registry.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
    assert.ok(existsSync(stored), `registry blob file not found at ${stored}`);
    // Flip one byte in the middle of the registry's copy (it does not re-hash on read).
    const flip = (path: string) => {
      const fd = openSync(path, "r+");
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, 3 * MiB);
      b[0] = b[0]! ^ 0xff;
      writeSync(fd, b, 0, 1, 3 * MiB);
      closeSync(fd);
    };
    flip(stored);

    const url = `${p.proxyUrl}/v2/test/app/blobs/${layer.digest}?ns=${encodeURIComponent(registry.hostPort)}`;
    const r = await request(url);
    assert.equal(r.statusCode, 200);
    let received = 0;
    let failed = false;
    try {
      for await (const c of r.body) received += (c as Buffer).length;
    } catch {
      failed = true;
    }
    assert.ok(
      failed && received < layer.size,
      `the client got a complete response (${received} of ${layer.size} B) for content that does not match its digest`,
    );
    const id = taskId({ url: `${registry.url}/v2/test/app/blobs/${layer.digest}`, digest: layer.digest });
    await pollUntil(() => cluster.daemons.every((d) => !existsSync(taskDir(d.dataDir, id))), "every daemon dropping the bad copy", 10_000);

    // The registry is repaired: the next pull gets the right bytes, nothing stale is served.
    flip(stored);
    const ok = await fetchBytes(url);
    assert.equal(ok.status, 200);
    assert.equal(sha256(ok.body), layer.digest, logTail(p));
  });
});
