// The zero-trust cluster end to end: scheduler, seed and two peers with role
// certificates move a file with the origin sending it once; every network
// listener refuses a stranger without a certificate, with a certificate of
// another CA, or in plaintext; a certificate replaced on disk is served to
// new connections without a restart.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { sha256File } from "../helpers/store.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { httpsGet, probe } from "../helpers/tls-probe.js";
import { issueCert } from "../../src/common/tls/issue.js";

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;

function fingerprintAt(hostPort: string): Promise<string> {
  const i = hostPort.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)), rejectUnauthorized: false, ALPNProtocols: ["h2", "http/1.1"] },
      () => {
        const fp = s.getPeerCertificate().fingerprint256;
        s.destroy();
        resolve(fp);
      },
    );
    s.on("error", reject);
  });
}

describe("zero trust: a TLS cluster on loopback", { timeout: 180_000 }, () => {
  let origin: Origin;
  let cluster: Cluster;
  let stranger: Pki;
  let dir: string;
  let url: string;
  let expected: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "damselfly-zt-"));
    origin = await startOrigin();
    expected = sha256Hex(origin.addRandomFile("/zt.bin", SIZE, "zt"));
    url = origin.url("/zt.bin");
    cluster = await startCluster({ tls: true, peers: 2, schedulerArgs: ["--metrics-listen", "127.0.0.1:0"] });
    stranger = await makePki(join(dir, "stranger"));
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("two peers get the file through the swarm; the origin sends it once", async () => {
    for (const [i, p] of cluster.peers.entries()) {
      const out = join(dir, `out-${i}`);
      const r = await p.get([url, "-O", out, "--no-progress"], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await sha256File(out), expected);
    }
    const sent = origin.bytesSent();
    assert.ok(sent >= SIZE && sent <= SIZE * 1.02, `origin sent ${sent} bytes for a ${SIZE}-byte file`);
  });

  test("every network listener refuses no certificate, another CA's certificate and plaintext; serves its own roles", async () => {
    const pki = cluster.pki!;
    const listeners = [
      { name: "scheduler", at: cluster.scheduler.address, alpn: "h2" as const, ok: await pki.issue("peer", "peer-0") },
      { name: "seed API", at: cluster.seed!.api, alpn: "h2" as const, ok: await pki.issue("scheduler", "scheduler") },
      ...cluster.daemons.map((d) => ({
        name: `${d.name} upload`,
        at: d.upload,
        alpn: "http/1.1" as const,
        ok: undefined as undefined | Awaited<ReturnType<Pki["issue"]>>,
      })),
    ];
    const peerCert = await pki.issue("peer", "peer-1");
    const foreign = await stranger.issue("peer", "peer-0");
    for (const l of listeners) {
      assert.equal(await probe(l.at, { alpn: l.alpn }), "refused", `${l.name}: no certificate`);
      assert.equal(await probe(l.at, { alpn: l.alpn, cert: foreign }), "refused", `${l.name}: another CA`);
      assert.equal(await probe(l.at, { alpn: l.alpn, plaintext: true }), "refused", `${l.name}: plaintext`);
      // The control: the same probe with a certificate of our CA gets an answer.
      assert.equal(await probe(l.at, { alpn: l.alpn, cert: l.ok ?? peerCert }), "served", `${l.name}: our CA`);
    }
    // The data plane serves peers only: a client certificate of our CA is told 403.
    const client = await pki.issue("client", "someone");
    assert.equal(await probe(cluster.peers[0]!.upload, { alpn: "http/1.1", cert: client }), "refused", "upload port: client role");
  });

  test("the metrics port: /metrics only to a certificate of the cluster CA, probes to anyone", async () => {
    const line = await cluster.scheduler.proc.waitForLog("scheduler listening", 10_000);
    const port = Number(String(line.metrics).split(":").pop());
    const ca = readFileSync((await cluster.pki!.issue("client", "prometheus")).ca);
    const get = async (path: string, cert?: Awaited<ReturnType<Pki["issue"]>>) => (await httpsGet(port, path, ca, cert)).status;
    assert.equal(await get("/metrics"), 403);
    assert.equal(await get("/metrics", await stranger.issue("client", "prometheus")), 403);
    assert.equal(await get("/metrics", await cluster.pki!.issue("client", "prometheus")), 200);
    assert.equal(await get("/healthz"), 200);
  });

  test("a certificate replaced on disk is what new connections see, without a restart", async () => {
    const pki = cluster.pki!;
    const files = await pki.issue("peer", "peer-0");
    const at = cluster.peers[0]!.upload;
    const before = await fingerprintAt(at);
    // Same name and role, a new key: what cert-manager does at renewal.
    const { dirname } = await import("node:path");
    await issueCert({ caDir: pki.caDir, role: "peer", name: "peer-0", ips: ["127.0.0.1"], dns: ["localhost"], out: dirname(files.cert) });
    let now = before;
    for (let i = 0; i < 100 && now === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = await fingerprintAt(at);
    }
    assert.notEqual(now, before, "the upload port still presents the old certificate");
    // And the swarm still works with it: a new task through peer-1 from peer-0.
    const out = join(dir, "after-rotation");
    const r = await cluster.peers[1]!.get([url, "-O", out, "--tag", "rotated", "--no-progress"], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), expected);
  });
});
