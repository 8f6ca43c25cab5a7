// The daemon's HTTP(S) proxy (--proxy-listen) with a real client: skopeo,
// pointed at a daemon with HTTP_PROXY/HTTPS_PROXY, pulls from a real registry
// (docker-registry) in a test network namespace (Go clients ignore proxies
// for loopback hosts, so the registry cannot sit on 127.0.0.1).
// - plain-http registry: skopeo's absolute-URI blob GETs go through P2P;
// - HTTPS registry, intercepted: the daemon terminates TLS with its own CA
//   (which the client trusts) and serves the blobs from P2P;
// - HTTPS registry, not intercepted: CONNECT is a byte tunnel, the swarm
//   never sees the blobs;
// - malformed proxy requests get clear 4xx answers and the daemon lives on.
// Every layer must reach the client byte-exact and leave the registry about
// once, however many peers pull it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { createTestHost, runCommand, type CommandResult } from "../helpers/netns.js";
import { makeOciImage, pushImage, type OciImage } from "../helpers/oci-image.js";
import { closedPort, type Cleanup, type LogLine } from "../helpers/procs.js";
import { directLayerGets } from "../helpers/mirror-setup.js";
import { makeTestCert, startRegistry, type AccessEntry, type Registry, type TestCert } from "../helpers/registry.js";
import { logTail, sha256File, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const LAYERS = [{ size: 6 * MiB }, { size: 3 * MiB }];
const REPO = "test/app";
const TAG = "v1";
const SKOPEO_TIMEOUT_MS = 60_000;
const SKOPEO_UA = /skopeo/i;

// Cleanups registered during a before() hook, run (last first) by after().
function suiteCleanup(): Cleanup & { run(): Promise<void> } {
  const fns: (() => unknown)[] = [];
  return {
    after: (fn) => void fns.push(fn),
    async run() {
      for (const fn of fns.reverse()) {
        try {
          await fn();
        } catch {
          // best effort: the rest still runs
        }
      }
    },
  };
}

interface CopyOptions {
  // The daemon proxy for both HTTP_PROXY and HTTPS_PROXY.
  proxy: string;
  args?: readonly string[];
}

// `skopeo copy docker://<ref> dir:<out>` through the proxy, nothing else
// from the runner's environment (no credentials, no NO_PROXY).
function skopeoCopy(ref: string, out: string, o: CopyOptions): Promise<CommandResult & { argv: string[] }> {
  const argv = ["copy", "--retry-times", "0", "--src-no-creds", ...(o.args ?? []), `docker://${ref}`, `dir:${out}`];
  return runCommand("skopeo", argv, {
    timeoutMs: SKOPEO_TIMEOUT_MS,
    env: {
      HTTP_PROXY: o.proxy,
      HTTPS_PROXY: o.proxy,
      http_proxy: o.proxy,
      https_proxy: o.proxy,
      NO_PROXY: undefined,
      no_proxy: undefined,
      ALL_PROXY: undefined,
      all_proxy: undefined,
      REGISTRY_AUTH_FILE: undefined,
      DOCKER_CONFIG: undefined,
    },
  }).then((r) => ({ ...r, argv: ["skopeo", ...argv] }));
}

function describeRun(r: CommandResult & { argv: string[] }): string {
  return `${r.argv.join(" ")} exited ${r.code ?? r.signal} after ${r.elapsedMs}ms\n--- stderr ---\n${r.stderr}\n--- stdout ---\n${r.stdout}`;
}

function hexOf(digest: string): string {
  return digest.replace(/^sha256:/, "");
}

// dir: names each blob file by its hex digest; each must hash to its name.
async function assertLayersCopied(out: string, image: OciImage, who: string): Promise<void> {
  for (const l of image.layers) {
    const file = join(out, hexOf(l.digest));
    assert.ok(existsSync(file), `${who}: ${file} missing; dir holds ${readdirSync(out).join(", ")}`);
    assert.equal(await sha256File(file), hexOf(l.digest), `${who}: layer ${l.digest} came out with other bytes`);
  }
}

function isLayerGet(e: AccessEntry, image: OciImage): boolean {
  return e.method === "GET" && image.layers.some((l) => e.path.endsWith(`/blobs/${l.digest}`));
}

function showAccess(entries: readonly AccessEntry[]): string {
  return entries.map((e) => `  ${e.remote} ${e.method} ${e.path} ${e.status} ${e.bytes} "${e.userAgent}"`).join("\n");
}

// Each layer left the registry at least once and at most 1.1 x its size,
// and never to skopeo itself: the daemons fetched it for the swarm.
function assertLayersLeftOnce(registry: Registry, entries: readonly AccessEntry[], image: OciImage, logs: () => string): void {
  for (const l of image.layers) {
    const sent = registry.blobBytesSent(l.digest);
    assert.ok(sent >= l.size, `layer ${l.digest} (${l.size} bytes): the registry sent only ${sent} bytes of it\n${showAccess(entries)}\n${logs()}`);
    assert.ok(
      sent <= 1.1 * l.size,
      `layer ${l.digest} (${l.size} bytes) left the registry ${(sent / l.size).toFixed(2)} times (${sent} bytes); expected about once\n${showAccess(entries)}\n${logs()}`,
    );
  }
  const byClient = directLayerGets(entries, image);
  assert.deepEqual(byClient, [], `skopeo fetched layers from the registry itself, around the proxy:\n${showAccess(byClient)}`);
}

// "proxy: served from P2P" for every layer, whole (200, the layer's size).
function assertServedFromP2P(d: DaemonHandle, image: OciImage): LogLine[] {
  const served = d.proc.logs.filter((l) => l.msg === "proxy: served from P2P");
  for (const l of image.layers) {
    assert.ok(
      served.some((s) => s.status === 200 && s.bytes === l.size),
      `${d.name} has no "proxy: served from P2P" line for layer ${l.digest} (${l.size} bytes)\n${logTail(d, 40)}`,
    );
  }
  return served;
}

// The proxy CA a daemon logged in "daemon ready", as the only *.crt of a new
// directory (skopeo's --src-cert-dir).
function proxyCaDir(d: DaemonHandle, parent: string): string {
  const file = d.ready.proxyCa;
  assert.equal(typeof file, "string", `${d.name}'s "daemon ready" line has no proxyCa: ${JSON.stringify(d.ready)}`);
  assert.ok(existsSync(file as string), `${d.name}'s proxy CA ${String(file)} does not exist`);
  const dir = join(parent, `ca-${d.name}`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(file as string, join(dir, "ca.crt"));
  return dir;
}

// One raw request on a fresh connection; resolves everything the proxy sent
// until it closed the connection (or the first response, for keep-alive).
function rawExchange(hostPort: string, request: string, timeoutMs = 10_000): Promise<string> {
  const [host, port] = [hostPort.slice(0, hostPort.lastIndexOf(":")), Number(hostPort.slice(hostPort.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let data = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete answer to ${JSON.stringify(request.split("\r\n")[0])} within ${timeoutMs}ms; got ${JSON.stringify(data)}`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(request));
    sock.on("data", (s: string) => (data += s));
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${JSON.stringify(request.split("\r\n")[0])}: ${e.message}; got ${JSON.stringify(data)}`));
    });
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

function statusOf(raw: string): number {
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(raw);
  return m ? Number(m[1]) : 0;
}

function httpGet(url: string, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${url}${path}`, { agent: false, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (s: string) => (body += s));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on("error", reject);
  });
}

describe("proxy mode: plain-http registry behind the HTTP proxy", { timeout: 180_000 }, () => {
  const cleanup = suiteCleanup();
  let registry: Registry;
  let image: OciImage;
  let ref: string;

  before(async () => {
    const host = await createTestHost("dfpxy21", { hostIp: "10.213.21.1", nsIp: "10.213.21.2", t: cleanup });
    const work = tempDir(cleanup, "damselfly-proxy21-");
    registry = await startRegistry({ dir: join(work, "registry"), host: host.nsIp, port: 5000, netns: host.name, t: cleanup });
    image = await makeOciImage(join(work, "image"), { layers: LAYERS, seed: "proxy-21" });
    ref = `${registry.hostPort}/${REPO}:${TAG}`;
    await pushImage(image.layoutDir, ref);
  });
  after(() => cleanup.run());

  test("skopeo through the HTTP proxy mode: blobs go through P2P and leave the registry once", { timeout: 120_000 }, async (t) => {
    const cluster = await startCluster({ peers: 2, seed: true, t });
    const out = tempDir(t, "damselfly-proxy-out-");
    const logs = () => cluster.daemons.map((d) => logTail(d)).join("\n");
    registry.resetAccessLog();

    // Both at once: the swarm, not the registry, must absorb the second pull.
    const results = await Promise.all(
      cluster.peers.map((p, i) => skopeoCopy(ref, join(out, `out-${i}`), { proxy: p.proxyUrl, args: ["--src-tls-verify=false"] })),
    );
    for (const r of results) assert.equal(r.code, 0, `${describeRun(r)}\n${logs()}`);
    for (const [i, p] of cluster.peers.entries()) await assertLayersCopied(join(out, `out-${i}`), image, p.name);

    const entries = await registry.accessLog();
    for (const line of showAccess(entries).split("\n")) t.diagnostic(`registry:${line}`);
    assertLayersLeftOnce(registry, entries, image, logs);
    for (const p of cluster.peers) {
      for (const s of assertServedFromP2P(p, image))
        t.diagnostic(
          `${p.name}: served ${String(s.bytes)} bytes, cache ${String(s.cache)}, from peers ${String(s.bytesFromPeers)}, from source ${String(s.bytesFromSource)}`,
        );
    }
  });
});

describe("proxy mode: HTTPS registry", { timeout: 300_000 }, () => {
  const cleanup = suiteCleanup();
  let registry: Registry;
  let cert: TestCert;
  let image: OciImage;
  let ref: string;

  before(async () => {
    const host = await createTestHost("dfpxy22", { hostIp: "10.213.22.1", nsIp: "10.213.22.2", t: cleanup });
    const work = tempDir(cleanup, "damselfly-proxy22-");
    cert = await makeTestCert(join(work, "cert"), { ips: [host.nsIp] });
    registry = await startRegistry({ dir: join(work, "registry"), host: host.nsIp, port: 5443, netns: host.name, tls: cert, t: cleanup });
    image = await makeOciImage(join(work, "image"), { layers: LAYERS, seed: "proxy-22" });
    ref = `${registry.hostPort}/${REPO}:${TAG}`;
    await pushImage(image.layoutDir, ref, { tlsVerify: true, certDir: cert.certDir });
  });
  after(() => cleanup.run());

  test("skopeo through HTTPS interception trusting the daemon's CA", { timeout: 150_000 }, async (t) => {
    const cluster = await startCluster({
      peers: 2,
      seed: true,
      t,
      daemonArgs: ["--proxy-intercept", "^10\\.213\\.22\\.2:5443$", "--source-ca", cert.certFile],
      // The registry's port, which CONNECT may not open by default (443 only).
      env: { DAMSELFLY_DAEMON_PROXY_CONNECT_PORTS: "5443" },
    });
    const work = tempDir(t, "damselfly-proxy-out-");
    const logs = () => cluster.daemons.map((d) => logTail(d)).join("\n");

    // A client that does not trust the daemon's CA refuses the intercepted
    // connection (before any blob is fetched).
    registry.resetAccessLog();
    const untrusting = await skopeoCopy(ref, join(work, "untrusting"), { proxy: cluster.peers[0]!.proxyUrl });
    assert.notEqual(untrusting.code, 0, `skopeo without the daemon's CA should fail:\n${describeRun(untrusting)}`);
    assert.match(untrusting.stderr, /x509|certificate/i, `skopeo should fail on the certificate:\n${describeRun(untrusting)}`);
    const before = await registry.accessLog();
    assert.deepEqual(
      before.filter((e) => isLayerGet(e, image)),
      [],
      `no layer should have been fetched for a refused client:\n${showAccess(before)}`,
    );

    registry.resetAccessLog();
    const results = await Promise.all(
      cluster.peers.map((p, i) => skopeoCopy(ref, join(work, `out-${i}`), { proxy: p.proxyUrl, args: ["--src-cert-dir", proxyCaDir(p, work)] })),
    );
    for (const r of results) assert.equal(r.code, 0, `${describeRun(r)}\n${logs()}`);
    for (const [i, p] of cluster.peers.entries()) await assertLayersCopied(join(work, `out-${i}`), image, p.name);

    const entries = await registry.accessLog();
    for (const line of showAccess(entries).split("\n")) t.diagnostic(`registry:${line}`);
    assertLayersLeftOnce(registry, entries, image, logs);
    for (const p of cluster.peers) {
      for (const s of assertServedFromP2P(p, image))
        t.diagnostic(
          `${p.name}: served ${String(s.bytes)} bytes, cache ${String(s.cache)}, from peers ${String(s.bytesFromPeers)}, from source ${String(s.bytesFromSource)}`,
        );
    }
  });

  test("CONNECT to a host that is not intercepted is tunnelled untouched", { timeout: 120_000 }, async (t) => {
    // No --proxy-intercept: every CONNECT is a plain tunnel.
    // CONNECT to the registry's port and, below, to a closed local port.
    const env = { DAMSELFLY_DAEMON_PROXY_CONNECT_PORTS: "1024-65535" };
    const cluster = await startCluster({ peers: 1, seed: true, t, daemonArgs: ["--source-ca", cert.certFile], env });
    const peer = cluster.peers[0]!;
    const out = join(tempDir(t, "damselfly-proxy-out-"), "out");
    assert.equal(peer.ready.proxyCa, undefined, "without interception rules the daemon should load no proxy CA");

    registry.resetAccessLog();
    // skopeo trusts the registry's own certificate: only a byte-exact tunnel
    // to the registry can satisfy it.
    const r = await skopeoCopy(ref, out, { proxy: peer.proxyUrl, args: ["--src-cert-dir", cert.certDir] });
    assert.equal(r.code, 0, `${describeRun(r)}\n${logTail(peer)}`);
    await assertLayersCopied(out, image, peer.name);

    const entries = await registry.accessLog();
    for (const l of image.layers) {
      const gets = entries.filter((e) => e.method === "GET" && e.path.endsWith(`/blobs/${l.digest}`) && (e.status === 200 || e.status === 206));
      assert.ok(gets.length > 0, `no GET of ${l.digest} in the registry log:\n${showAccess(entries)}`);
      for (const e of gets) assert.match(e.userAgent, SKOPEO_UA, `layer ${l.digest} was fetched by someone other than skopeo:\n${showAccess(entries)}`);
      assert.equal(registry.blobBytesSent(l.digest), l.size, `layer ${l.digest} should have been sent exactly once, to skopeo:\n${showAccess(entries)}`);
    }
    const nonClient = entries.filter((e) => !SKOPEO_UA.test(e.userAgent));
    assert.deepEqual(nonClient, [], `the daemons should not have talked to the registry at all:\n${showAccess(nonClient)}`);
    for (const d of cluster.daemons) {
      const served = d.proc.logs.filter((l) => l.msg.startsWith("proxy: served from P2P"));
      assert.deepEqual(served, [], `${d.name} served something from P2P for a tunnelled pull`);
    }

    // A CONNECT target where nothing listens: 502 with the error code, no hang.
    const port = await closedPort();
    const answer = await rawExchange(peer.proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    assert.equal(statusOf(answer), 502, `CONNECT to a closed port: ${JSON.stringify(answer)}`);
    assert.match(answer, /x-damselfly-error: DF_ERR_SOURCE_UNREACHABLE/i, answer);
    await peer.proc.waitForLog("proxy: CONNECT target unreachable", 5_000, (l) => l.target === `127.0.0.1:${port}`);
  });
});

describe("proxy mode: malformed proxy requests", { timeout: 60_000 }, () => {
  let cluster: Cluster;
  const cleanup = suiteCleanup();
  before(async () => {
    // The intercept rule matches a target no certificate can be made for.
    cluster = await startCluster({ peers: 1, seed: false, t: cleanup, daemonArgs: ["--proxy-intercept", "^999\\."] });
  });
  after(() => cleanup.run());

  test("malformed proxy requests get clear errors", { timeout: 30_000 }, async () => {
    const peer = cluster.peers[0]!;

    // Neither /v2/... nor an absolute URI.
    const nope = await httpGet(peer.proxyUrl, "/nope");
    assert.equal(nope.status, 400, `GET /nope: ${nope.status} ${nope.body}`);
    assert.match(String(nope.headers["content-type"]), /application\/json/, `GET /nope content-type: ${String(nope.headers["content-type"])}`);
    const body = JSON.parse(nope.body) as { code?: string; message?: string };
    assert.equal(body.code, "DF_ERR_INVALID_REQUEST", nope.body);
    assert.ok(body.message && body.message.length > 0, `GET /nope: no message in ${nope.body}`);
    assert.equal(nope.headers["x-damselfly-error"], "DF_ERR_INVALID_REQUEST");

    // CONNECT targets that are not host:port.
    for (const target of ["nonsense", "example.com:0", "example.com:99999", "example.com:"]) {
      const answer = await rawExchange(peer.proxy, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      assert.equal(statusOf(answer), 400, `CONNECT ${target}: expected 400, got ${JSON.stringify(answer)}`);
      assert.match(answer, /x-damselfly-error: DF_ERR_INVALID_REQUEST/i, `CONNECT ${target}: ${answer}`);
    }

    // Interception of a target the CA cannot certify: an HTTP answer, not a dropped connection.
    const bogus = await rawExchange(peer.proxy, "CONNECT 999.1.1.1:443 HTTP/1.1\r\nHost: 999.1.1.1:443\r\n\r\n");
    assert.equal(statusOf(bogus), 400, `CONNECT 999.1.1.1:443: ${JSON.stringify(bogus)}`);
    assert.match(bogus, /x-damselfly-error: DF_ERR_INVALID_REQUEST/i, bogus);

    // Not HTTP at all.
    const garbage = await rawExchange(peer.proxy, "BLAH\r\n\r\n");
    assert.equal(statusOf(garbage), 400, `garbage: ${JSON.stringify(garbage)}`);

    // An absolute URI with a scheme the proxy does not speak.
    const ftp = await rawExchange(peer.proxy, "GET ftp://example.com/file HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
    assert.equal(statusOf(ftp), 400, `GET ftp://...: ${JSON.stringify(ftp)}`);

    // The daemon still serves.
    const healthy = await httpGet(peer.proxyUrl, "/healthy");
    assert.equal(healthy.status, 200, `/healthy after the bad requests: ${healthy.status} ${healthy.body}`);
    assert.ok(peer.proc.running, `${peer.name} exited:\n${logTail(peer)}`);
  });
});
