// Tenant isolation, as an attacker without credentials tries it: a private
// registry's blob, cached by a tenant who may read it, must not reach a
// client who names another registry (one that redirects to the private one,
// or one that says yes to anyone) through the mirror of the node that holds
// it or of any other node, nor a digest-keyed read through the daemon API.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { request } from "undici";
import { createClient } from "@connectrpc/connect";
import { createRpcTransport, daemonv1, fromConnectError } from "../../src/protocol/index.js";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import { registryWithImage } from "../helpers/mirror-setup.js";
import type { Cleanup } from "../helpers/procs.js";
import { logTail, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;

function sha256(b: Buffer): string {
  return "sha256:" + createHash("sha256").update(b).digest("hex");
}

// What a client got: status, cache header and the body's digest (or that
// the response broke off).
async function attempt(url: string, headers: Record<string, string> = {}): Promise<{ status: number; cache: unknown; digest: string | "cut" }> {
  const r = await request(url, { headers });
  const chunks: Buffer[] = [];
  try {
    for await (const c of r.body) chunks.push(c as Buffer);
  } catch {
    return { status: r.statusCode, cache: r.headers["x-damselfly-cache"], digest: "cut" };
  }
  return { status: r.statusCode, cache: r.headers["x-damselfly-cache"], digest: sha256(Buffer.concat(chunks)) };
}

// A "registry" on 127.0.0.1 run by the attacker.
async function fakeRegistry(t: Cleanup, answer: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<string> {
  const server = http.createServer(answer);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("tenant isolation", { timeout: 240_000 }, () => {
  test("a private blob cached by one tenant: another client naming a redirecting or a lying registry, on any node, or asking the daemon API by digest, never gets it", async (t) => {
    const dir = tempDir(t, "df-tenant-");
    const auth = { user: "alice", password: "pw-Tenant-A-77" };
    const basic = "Basic " + Buffer.from(`${auth.user}:${auth.password}`).toString("base64");
    const { registry, image } = await registryWithImage(t, dir, { layers: [4 * MiB], auth, seed: "tenant" });
    const layer = image.layers[0]!;
    const blobPath = `/v2/test/app/blobs/${layer.digest}`;
    const cluster = await startCluster({ peers: 2, seed: true, t });
    const [holder, other] = cluster.peers as [DaemonHandle, DaemonHandle];

    // Tenant A pulls the layer through its node.
    const mine = await attempt(`${holder.proxyUrl}${blobPath}?ns=${encodeURIComponent(registry.hostPort)}`, { authorization: basic });
    assert.equal(mine.status, 200, logTail(holder));
    assert.equal(mine.digest, layer.digest);

    // The attacker's registries: one redirects everything to the private
    // registry (whose 401 a redirect-is-yes check never saw), one answers
    // yes to every HEAD and serves zeros.
    const redirecting = await fakeRegistry(t, (req, res) => res.writeHead(307, { location: `${registry.url}${req.url}` }).end());
    const lying = await fakeRegistry(t, (req, res) => {
      res.writeHead(200, { "content-length": String(layer.size), "docker-content-digest": layer.digest });
      res.end(req.method === "HEAD" ? undefined : Buffer.alloc(layer.size));
    });
    for (const node of [holder, other]) {
      for (const [name, evil] of [
        ["redirecting", redirecting],
        ["lying", lying],
      ] as const) {
        const viaNs = await attempt(`${node.proxyUrl}${blobPath}?ns=${encodeURIComponent(evil)}`);
        const viaHeader = await attempt(`${node.proxyUrl}${blobPath}`, { "x-damselfly-registry": evil });
        for (const [how, r] of [
          ["ns=", viaNs],
          ["X-Damselfly-Registry", viaHeader],
        ] as const) {
          const what = `${node.name}, ${name} registry via ${how}: ${JSON.stringify(r)}`;
          assert.notEqual(r.digest, layer.digest, `the private blob leaked (${what})`);
          assert.notEqual(r.cache, "hit", what);
        }
      }
    }

    // The daemon API, by digest: the registry decides with the caller's own credentials.
    const api = createClient(daemonv1.DaemonService, createRpcTransport(holder.apiUrl));
    const read = async (headers: Record<string, string>) => {
      const chunks: Uint8Array[] = [];
      try {
        for await (const ev of api.downloadTask({
          download: { url: `${registry.url}${blobPath}`, headers, digest: layer.digest, digestTaskId: true },
          delivery: daemonv1.Delivery.STREAM,
        }))
          if (ev.event.case === "chunk") chunks.push(ev.event.value.data);
      } catch (err) {
        return fromConnectError(err).code;
      }
      return sha256(Buffer.concat(chunks));
    };
    assert.equal(await read({}), "DF_ERR_SOURCE_STATUS", "a digest-keyed read without credentials");
    assert.equal(await read({ authorization: "Basic " + Buffer.from("mallory:guess").toString("base64") }), "DF_ERR_SOURCE_STATUS");
    assert.equal(await read({ authorization: basic }), layer.digest, "the tenant's own read");
  });
});
