// Hostile requests inside an intercepted CONNECT tunnel: each one fails on
// its own with a 400 and the daemon goes on serving (one `GET //` used to
// throw out of the request listener and kill the daemon). A request-target
// that is not origin-form never reaches a host other than the tunnel's.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { makeTestCert } from "../helpers/registry.js";
import { logTail, tempDir } from "../helpers/store.js";
import type { Cleanup } from "../helpers/procs.js";

interface Answer {
  status: number;
  head: string;
  body: string;
}

// CONNECT through the daemon's proxy, then TLS trusting the daemon's CA, then
// one raw HTTP/1.1 request (connection: close) and its whole answer.
async function throughTunnel(d: DaemonHandle, target: string, requestLine: string, ca: Buffer): Promise<Answer> {
  const [host, port] = d.proxy.split(":") as [string, string];
  const raw = net.connect({ host, port: Number(port) });
  raw.setTimeout(10_000, () => raw.destroy(new Error(`${requestLine}: no answer within 10 s`)));
  await new Promise<void>((resolve, reject) => {
    let seen = "";
    raw.once("error", reject);
    raw.on("connect", () => raw.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    const onData = (b: Buffer) => {
      seen += b.toString("latin1");
      if (!seen.includes("\r\n\r\n")) return;
      raw.off("data", onData);
      if (/^HTTP\/1\.1 200 /.test(seen)) resolve();
      else reject(new Error(`CONNECT ${target}: ${JSON.stringify(seen)}`));
    };
    raw.on("data", onData);
  });
  const ip = target.slice(0, target.lastIndexOf(":"));
  const secure = tls.connect({ socket: raw, ca, ALPNProtocols: ["http/1.1"], checkServerIdentity: (_h, cert) => tls.checkServerIdentity(ip, cert) });
  const text = await new Promise<string>((resolve, reject) => {
    let data = "";
    secure.setEncoding("utf8");
    secure.on("secureConnect", () => secure.write(`${requestLine}\r\nHost: ${target}\r\nConnection: close\r\n\r\n`));
    secure.on("data", (s: string) => (data += s));
    secure.on("end", () => resolve(data));
    secure.on("close", () => resolve(data));
    secure.on("error", (e) => reject(new Error(`${requestLine}: ${e.message}; got ${JSON.stringify(data)}`)));
  });
  const split = text.indexOf("\r\n\r\n");
  const head = split < 0 ? text : text.slice(0, split);
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ?? 0);
  return { status, head, body: split < 0 ? "" : text.slice(split + 4) };
}

describe("proxy: hostile requests inside an intercepted tunnel", { timeout: 60_000 }, () => {
  let cluster: Cluster;
  let origin: https.Server;
  let target = "";
  let ca: Buffer;
  const hits: string[] = [];
  const fns: (() => unknown)[] = [];
  const cleanup: Cleanup = { after: (fn) => void fns.push(fn) };

  before(async () => {
    const cert = await makeTestCert(tempDir(cleanup, "damselfly-intercept-"));
    origin = https.createServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (req, res) => {
      hits.push(req.url ?? "");
      res.writeHead(200, { "content-type": "text/plain" }).end("hello from the origin\n");
    });
    await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
    fns.push(() => new Promise((r) => origin.close(r)));
    target = `127.0.0.1:${(origin.address() as net.AddressInfo).port}`;
    cluster = await startCluster({
      peers: 1,
      seed: false,
      t: cleanup,
      daemonArgs: ["--proxy-intercept", `^${target.replace(/\./g, "\\.")}$`, "--source-ca", cert.certFile],
      // The test origin's port is no HTTPS port the proxy tunnels to by default.
      env: { DAMSELFLY_DAEMON_PROXY_CONNECT_PORTS: target.slice(target.lastIndexOf(":") + 1) },
    });
    ca = readFileSync(String(cluster.peers[0]!.ready.proxyCa));
  });
  after(async () => {
    for (const fn of fns.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  });

  test("a request-target that is not origin-form gets 400 and the daemon lives on", async () => {
    const peer = cluster.peers[0]!;
    const ok = await throughTunnel(peer, target, "GET /hello HTTP/1.1", ca);
    assert.equal(ok.status, 200, `GET /hello before: ${ok.head}`);
    assert.match(ok.body, /hello from the origin/);

    for (const line of ["GET // HTTP/1.1", "GET //evil.example/x HTTP/1.1", "GET * HTTP/1.1", "GET http://other.example/x HTTP/1.1", "GET x HTTP/1.1"]) {
      const bad = await throughTunnel(peer, target, line, ca);
      assert.equal(bad.status, 400, `${line}: ${bad.head}\n${logTail(peer)}`);
      assert.match(bad.head, /x-damselfly-error: DF_ERR_INVALID_REQUEST/i, `${line}: ${bad.head}`);
      assert.ok(peer.proc.running, `${peer.name} exited after ${line}:\n${logTail(peer)}`);
    }
    // Absolute-form naming the tunnel's own origin is the same request as origin-form.
    const same = await throughTunnel(peer, target, `GET https://${target}/again HTTP/1.1`, ca);
    assert.equal(same.status, 200, `absolute-form of the tunnel's origin: ${same.head}`);

    const after = await throughTunnel(peer, target, "GET /hello HTTP/1.1", ca);
    assert.equal(after.status, 200, `GET /hello after: ${after.head}`);
    assert.deepEqual(hits, ["/hello", "/again", "/hello"], "only the well-formed requests reached the origin");
    assert.ok(peer.proc.running, `${peer.name} exited:\n${logTail(peer)}`);
  });
});
