// What an image preheat may fetch from a registry, against fixture
// registries on loopback: a huge manifest is refused after at most the cap
// (declared or streamed), a token realm on another origin over plain http
// gets no credentials, and a realm or a manifest URL the egress policy
// denies (0.0.0.0, which Linux routes to this host) is never contacted.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { resolveImage } from "../../src/manager/jobs/image-resolver.js";
import { MAX_MANIFEST_BYTES, realmGetsCredentials } from "../../src/manager/jobs/registry-client.js";

const MiB = 1024 * 1024;
const d = (c: string) => "sha256:" + c.repeat(64);
const BASIC = "Basic dTpw";
const MANIFEST = JSON.stringify({ schemaVersion: 2, config: { digest: d("c"), size: 1 }, layers: [{ digest: d("1"), size: 10 }] });

async function serve(t: TestContext, host: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const srv = createServer(handler);
  await new Promise<void>((r) => srv.listen(0, host, r));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  return (srv.address() as AddressInfo).port;
}

// Streams `total` bytes with backpressure; counts what it got to write.
function stream(res: ServerResponse, total: number, headers: Record<string, string | number>): { written: () => number; closed: Promise<void> } {
  let written = 0;
  let open = true;
  const closed = new Promise<void>((r) => res.on("close", () => r()));
  res.on("close", () => {
    open = false;
  });
  res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json", ...headers });
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const pump = () => {
    while (open && written < total) {
      written += chunk.length;
      if (!res.write(chunk)) return void res.once("drain", pump);
    }
    if (open) res.end();
  };
  pump();
  return { written: () => written, closed };
}

for (const declared of [true, false]) {
  test(`a 400 MiB manifest (${declared ? "Content-Length" : "chunked"}) is refused after at most a few MiB`, async (t) => {
    let sent: ReturnType<typeof stream> | undefined;
    const port = await serve(t, "127.0.0.1", (_req, res) => {
      sent = stream(res, 400 * MiB, declared ? { "content-length": 400 * MiB } : {});
    });
    await assert.rejects(resolveImage(`http://127.0.0.1:${port}/v2/big/manifests/v1`, {}, "linux/amd64"), (err: { code?: string; message: string }) => {
      assert.equal(err.code, "DF_ERR_SOURCE_PROTOCOL");
      assert.match(err.message, /larger than 4194304 bytes|too large/);
      return true;
    });
    await sent!.closed;
    const bound = declared ? 16 * MiB : MAX_MANIFEST_BYTES + 16 * MiB;
    t.diagnostic(`the registry got to write ${(sent!.written() / MiB).toFixed(1)} MiB`);
    assert.ok(sent!.written() < bound, `${sent!.written()} bytes were pulled from the registry`);
  });
}

test("a realm on another origin over plain http gets a token request without the job's credentials", async (t) => {
  const tokenSeen: (string | undefined)[] = [];
  const realmPort = await serve(t, "127.0.0.2", (req, res) => {
    tokenSeen.push(req.headers.authorization);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "anon-tok" }));
  });
  const port = await serve(t, "127.0.0.1", (req, res) => {
    if (req.headers.authorization !== "Bearer anon-tok") {
      return void res.writeHead(401, { "www-authenticate": `Bearer realm="http://127.0.0.2:${realmPort}/token",service="reg"` }).end();
    }
    res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" }).end(MANIFEST);
  });
  const img = await resolveImage(`http://127.0.0.1:${port}/v2/app/manifests/v1`, { Authorization: BASIC }, "linux/amd64");
  assert.equal(img.blobs.length, 1);
  assert.deepEqual(tokenSeen, [undefined], "the password did not go to the other host");
});

test("a realm or a manifest URL the egress policy denies is never contacted", async (t) => {
  const reached: string[] = [];
  // 0.0.0.0:PORT reaches this listener on Linux: the manager must not try.
  const port = await serve(t, "127.0.0.1", (req, res) => {
    reached.push(`${req.url} ${req.headers.authorization ?? "-"}`);
    if (req.url?.startsWith("/token")) return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: "t" }));
    if (req.headers.authorization !== "Bearer t") {
      return void res.writeHead(401, { "www-authenticate": `Bearer realm="http://0.0.0.0:${port}/token",service="reg"` }).end();
    }
    res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" }).end(MANIFEST);
  });
  const denied = (err: { code?: string }) => err.code === "DF_ERR_EGRESS_DENIED";
  await assert.rejects(resolveImage(`http://127.0.0.1:${port}/v2/app/manifests/v1`, { Authorization: BASIC }, "linux/amd64"), denied);
  assert.deepEqual(reached, [`/v2/app/manifests/v1 ${BASIC}`], "only the registry itself was asked");
  await assert.rejects(resolveImage(`http://0.0.0.0:${port}/v2/app/manifests/v1`, { Authorization: BASIC }, "linux/amd64"), denied);
  assert.equal(reached.length, 1);
});

test("which realms get the job's credentials: the registry's own origin, or https", () => {
  const reg = new URL("http://registry.example:5000");
  assert.equal(realmGetsCredentials(new URL("http://registry.example:5000/token"), reg), true);
  assert.equal(realmGetsCredentials(new URL("https://auth.example/token"), reg), true);
  assert.equal(realmGetsCredentials(new URL("http://auth.example/token"), reg), false);
  assert.equal(realmGetsCredentials(new URL("http://registry.example:5001/token"), reg), false);
  assert.equal(realmGetsCredentials(new URL("http://registry.example/token"), new URL("https://registry.example")), false, "a downgrade to http");
});
