import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { request } from "undici";
import { startCluster } from "../helpers/cluster.js";
import { closedPort } from "../helpers/procs.js";
import { tempDir } from "../helpers/store.js";
import { registryWithImage } from "../helpers/mirror-setup.js";

const MiB = 1024 * 1024;
const MISSING = "sha256:" + "0".repeat(64);

async function get(url: string, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET") {
  const r = await request(url, { method, headers });
  const body = Buffer.from(await r.body.arrayBuffer());
  return { status: r.statusCode, headers: r.headers, body };
}

test("registry errors reach the client unchanged through the mirror: 404 from a real registry, 429 and 503 from a failing one", async (t) => {
  const dir = tempDir(t, "dfe-");
  const { registry } = await registryWithImage(t, dir, { layers: [2 * MiB], seed: "errors" });
  const cluster = await startCluster({ peers: 1, seed: false, t });
  const p = cluster.peers[0]!;
  const ns = `?ns=${encodeURIComponent(registry.hostPort)}`;

  // Unknown blob and unknown tag: the registry's own 404 body and headers.
  for (const path of [`/v2/test/app/blobs/${MISSING}`, "/v2/test/app/manifests/no-such-tag", "/v2/no/such/repo/manifests/v1"]) {
    const direct = await get(`${registry.url}${path}`);
    const mirrored = await get(`${p.proxyUrl}${path}${ns}`);
    assert.equal(mirrored.status, direct.status, path);
    assert.equal(mirrored.status, 404, path);
    assert.deepEqual(JSON.parse(mirrored.body.toString()), JSON.parse(direct.body.toString()), `${path}: body differs`);
    assert.equal(mirrored.headers["docker-distribution-api-version"], "registry/2.0", path);
  }

  // A registry that sheds load or is down: status, Retry-After and body pass through.
  const failing = http.createServer((req, res) => {
    if (req.url?.startsWith("/v2/busy/")) {
      res.writeHead(429, { "retry-after": "7", "content-type": "application/json" }).end('{"errors":[{"code":"TOOMANYREQUESTS"}]}');
    } else res.writeHead(503, { "content-type": "text/plain" }).end("down for maintenance\n");
  });
  failing.listen(0, "127.0.0.1");
  await once(failing, "listening");
  t.after(() => new Promise<void>((r) => failing.close(() => r())));
  const up = `http://127.0.0.1:${(failing.address() as { port: number }).port}`;
  const busy = await get(`${p.proxyUrl}/v2/busy/app/blobs/${MISSING}`, { "x-damselfly-registry": up });
  assert.equal(busy.status, 429);
  assert.equal(busy.headers["retry-after"], "7");
  assert.equal(busy.body.toString(), '{"errors":[{"code":"TOOMANYREQUESTS"}]}');
  const down = await get(`${p.proxyUrl}/v2/down/app/manifests/v1`, { "x-damselfly-registry": up });
  assert.equal(down.status, 503);
  assert.equal(down.body.toString(), "down for maintenance\n");

  // A registry that does not answer at all: the daemon's own 502 with a code.
  const closed = await get(`${p.proxyUrl}/v2/x/manifests/v1`, { "x-damselfly-registry": `http://127.0.0.1:${await closedPort()}` });
  assert.equal(closed.status, 502);
  assert.equal(closed.headers["x-damselfly-error"], "DF_ERR_SOURCE_UNREACHABLE");

  // A malformed registry name is the client's error.
  const bad = await get(`${p.proxyUrl}/v2/x/manifests/v1`, { "x-damselfly-registry": "http://user:pw@host" });
  assert.equal(bad.status, 400);
  assert.equal(bad.headers["x-damselfly-error"], "DF_ERR_INVALID_REQUEST");
});
