// The manager with --tls-*: one HTTPS port where users sign in as before
// (no client certificate needed) and the component RPC is decided by the
// caller's certificate. A fake scheduler (no certificate, another CA's, or a
// peer's) can neither register nor leave, so it never receives a preheat job
// or its registry credentials; a registered address that does not answer
// with a scheduler certificate never sees the job; a real scheduler does.
// Daemons check that the manager they ask for schedulers is the manager.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Agent, request } from "undici";
import { createLogger } from "../../src/common/logger.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { issueCert } from "../../src/common/tls/issue.js";
import { schedulersFromManager } from "../../src/peer/manager-schedulers.js";
import { createManagerTransport, managerv1 } from "../../src/protocol/index.js";
import { startManager, waitForJob, type ManagerHandle } from "../helpers/manager.js";
import { codeOf } from "../helpers/rpc-code.js";
import { makePki, type CertFiles, type Pki } from "../helpers/pki.js";
import { runDamselfly, spawnDamselfly } from "../helpers/procs.js";
import { sleep } from "../helpers/store.js";

const log = createLogger("silent");

const load = (f: CertFiles) => TlsIdentity.load(f, { watch: false });

describe("manager with mutual TLS", { timeout: 120_000 }, () => {
  let dir: string;
  let pki: Pki;
  let other: Pki;
  let manager: ManagerHandle;
  let managerFiles: CertFiles;
  let root: string;
  let ca: Buffer;

  // A Connect client that trusts our CA and shows whatever certificate it is given.
  const rawClient = (cert?: CertFiles) =>
    createClient(
      managerv1.ManagerService,
      createConnectTransport({
        baseUrl: manager.url,
        httpVersion: "1.1",
        nodeOptions: { ca, agent: false, ...(cert ? { cert: readFileSync(cert.cert), key: readFileSync(cert.key) } : {}) },
      }),
    );
  const asRole = async (role: "scheduler" | "peer" | "seed-peer" | "client", name: string) =>
    createClient(
      managerv1.ManagerService,
      createManagerTransport(manager.url, { identity: load(await pki.issue(role, name)), server: { roles: ["manager"], verifyHostname: true } }),
    );
  const keepAlive = (port: number) => ({ clusterId: 1n, hostname: "sched", ip: "127.0.0.1", port });
  const schedulers = async () => (await manager.api("GET", "/api/v1/schedulers", { token: root })).body as { port: number; state: string }[];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "damselfly-mgr-tls-"));
    pki = await makePki(join(dir, "pki"));
    other = await makePki(join(dir, "other"));
    managerFiles = await pki.issue("manager", "manager");
    ca = readFileSync(managerFiles.ca);
    manager = await startManager({ args: await pki.args("manager", "manager"), tlsCa: managerFiles.ca });
    root = await manager.signin();
  });
  after(async () => {
    await manager?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("users sign in over HTTPS without a certificate; plain HTTP on the port gets nothing", async () => {
    assert.match(manager.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await manager.api("GET", "/healthz")).status, 200);
    assert.equal((await manager.api("GET", "/api/v1/users", { token: root })).status, 200);
    await assert.rejects(request(manager.url.replace("https:", "http:") + "/healthz").then((r) => r.body.text()));
  });

  test("KeepAliveScheduler and LeaveScheduler: refused without a certificate, with another CA's, with a peer's; a scheduler's registers", async () => {
    const stranger = await other.issue("scheduler", "sched");
    assert.equal(await codeOf(rawClient().keepAliveScheduler(keepAlive(1111))), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOf(rawClient(stranger).keepAliveScheduler(keepAlive(1111))), "DF_ERR_PEER_ROLE");
    const peer = await asRole("peer", "p1");
    assert.equal(await codeOf(peer.keepAliveScheduler(keepAlive(1111))), "DF_ERR_PEER_ROLE");
    const client = await asRole("client", "c1");
    assert.equal(await codeOf(client.keepAliveScheduler(keepAlive(1111))), "DF_ERR_PEER_ROLE");
    assert.deepEqual(await schedulers(), [], "nothing registered");

    const sched = await asRole("scheduler", "sched-a");
    assert.equal(await codeOf(sched.keepAliveScheduler(keepAlive(1111))), "ok");
    assert.deepEqual(
      (await schedulers()).filter((s) => s.port === 1111).map((s) => s.state),
      ["active"],
    );
    // A peer cannot make a scheduler leave (it would stop its jobs).
    assert.equal(await codeOf(peer.leaveScheduler({ ip: "127.0.0.1", port: 1111 })), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOf(rawClient(stranger).leaveScheduler({ ip: "127.0.0.1", port: 1111 })), "DF_ERR_PEER_ROLE");
    assert.deepEqual(
      (await schedulers()).filter((s) => s.port === 1111).map((s) => s.state),
      ["active"],
    );
    assert.equal(await codeOf(sched.leaveScheduler({ ip: "127.0.0.1", port: 1111 })), "ok");
    assert.deepEqual(
      (await schedulers()).filter((s) => s.port === 1111).map((s) => s.state),
      ["inactive"],
    );
  });

  test("the scheduler extender routes: a client certificate of the CA only (kube-scheduler's tlsConfig)", async () => {
    const body = JSON.stringify({ Pod: { spec: { containers: [{ image: "nginx" }] } }, NodeNames: ["n1"] });
    const post = async (cert?: CertFiles) => {
      const dispatcher = new Agent({ connect: { ca, ...(cert ? { cert: readFileSync(cert.cert), key: readFileSync(cert.key) } : {}) } });
      try {
        const r = await request(`${manager.url}/extender/v1/prioritize`, { method: "POST", dispatcher, headers: { "content-type": "application/json" }, body });
        return { status: r.statusCode, body: await r.body.json() };
      } finally {
        await dispatcher.close();
      }
    };
    assert.equal((await post()).status, 401);
    assert.equal((await post(await other.issue("client", "ks"))).status, 401);
    assert.equal((await post(await pki.issue("peer", "p1"))).status, 403);
    assert.deepEqual(await post(await pki.issue("client", "kube-scheduler")), { status: 200, body: [{ Host: "n1", Score: 0 }] });
  });

  test("ListSchedulers: any member role; not without a certificate or with another CA's", async () => {
    for (const [role, name] of [
      ["peer", "p1"],
      ["seed-peer", "s1"],
      ["scheduler", "sched-a"],
      ["client", "c1"],
    ] as const) {
      assert.equal(await codeOf((await asRole(role, name)).listSchedulers({})), "ok", role);
    }
    assert.equal(await codeOf(rawClient().listSchedulers({})), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOf(rawClient(await other.issue("peer", "p1")).listSchedulers({})), "DF_ERR_PEER_ROLE");
  });

  test("the component RPC reads at most 4 MiB of a request", async () => {
    const sched = await pki.issue("scheduler", "sched-a");
    const res = await request(`${manager.url}/damselfly.manager.v1.ManagerService/KeepAliveScheduler`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: Buffer.alloc(5 * 1024 * 1024),
      dispatcher: new (await import("undici")).Agent({ connect: { ca, cert: readFileSync(sched.cert), key: readFileSync(sched.key) } }),
    });
    const body = (await res.body.json()) as { code: string };
    assert.equal(body.code, "resource_exhausted");
  });

  test("a daemon takes the scheduler list only from a manager certificate naming the URL's host", async () => {
    const sched = await asRole("scheduler", "sched-a");
    await sched.keepAliveScheduler(keepAlive(2222));
    const peer = load(await pki.issue("peer", "p1"));
    assert.deepEqual(await schedulersFromManager(manager.url, 1, log, undefined, true, undefined, peer), ["127.0.0.1:2222"]);
    // Without our certificate the manager does not answer; a "manager" with
    // a scheduler's certificate is not believed.
    assert.equal(await schedulersFromManager(manager.url, 1, log, undefined, true), undefined);
    const impostor = await fakeTlsServer(await pki.issue("scheduler", "impostor"));
    try {
      assert.equal(await schedulersFromManager(`https://127.0.0.1:${impostor.port}`, 1, log, undefined, true, undefined, peer), undefined);
      assert.equal(impostor.requests(), 0, "the impostor saw no request (nor the cluster token)");
    } finally {
      await impostor.close();
      await sched.leaveScheduler({ ip: "127.0.0.1", port: 2222 });
    }
  });

  test("jobs go only to an address that answers with a scheduler certificate; a real scheduler receives them", async () => {
    // A registered address where something else answers (a peer's
    // certificate): the job's credentials never reach it.
    const fake = await fakeTlsServer(await pki.issue("peer", "not-a-scheduler"), true);
    const sched = await asRole("scheduler", "sched-a");
    try {
      await sched.keepAliveScheduler({ ...keepAlive(fake.port), clusterId: 1n });
      const job = await manager.api("POST", "/api/v1/jobs", {
        token: root,
        body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/x.bin", headers: { Authorization: "Bearer registry-secret" } } },
      });
      assert.equal(job.status, 200, JSON.stringify(job.body));
      const done = await waitForJob(manager, root, job.body.id, 60_000, "/api/v1");
      assert.equal(done.state, "FAILURE");
      assert.equal(fake.requests(), 0, "the fake scheduler received no request");
      await sched.leaveScheduler({ ip: "127.0.0.1", port: fake.port });
    } finally {
      await fake.close();
    }

    // A real scheduler with its certificate: the job reaches it over mutual
    // TLS and it answers for itself (no seed peer to preheat into).
    const proc = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0", ...(await pki.args("scheduler", "sched-a"))], { name: "scheduler" });
    try {
      const ready = await proc.waitForLog("scheduler ready", 20_000);
      const port = Number(String(ready.listen).split(":").pop());
      await sched.keepAliveScheduler(keepAlive(port));
      const job = await manager.api("POST", "/api/v1/jobs", {
        token: root,
        body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/y.bin" }, scheduler_cluster_ids: [1] },
      });
      const done = await waitForJob(manager, root, job.body.id, 60_000, "/api/v1");
      assert.equal(done.state, "FAILURE", JSON.stringify(done.result));
      assert.match(JSON.stringify(done.result), /DF_ERR_NO_PARENT/, "the scheduler itself answered");
    } finally {
      await proc.stop("SIGTERM", 5_000);
    }
  });

  test("damselfly preheat reaches the HTTPS manager when told to trust the cluster CA", async () => {
    const pat = await manager.api("POST", "/api/v1/personal-access-tokens", {
      token: root,
      body: { name: "ci", scopes: ["job"], expired_at: new Date(Date.now() + 600_000).toISOString() },
    });
    const args = ["preheat", "http://127.0.0.1:9/z.bin", "--manager", manager.url, "--no-wait"];
    const env = { DAMSELFLY_PREHEAT_TOKEN: pat.body.token as string };
    const untrusted = await runDamselfly(args, { env, timeoutMs: 20_000 });
    assert.notEqual(untrusted.code, 0, "a manager certificate of an unknown CA is not trusted");
    const trusted = await runDamselfly(args, { env: { ...env, NODE_EXTRA_CA_CERTS: managerFiles.ca }, timeoutMs: 20_000 });
    assert.equal(trusted.code, 0, trusted.stderr);
  });

  test("the manager's certificate is replaced on disk: new connections get the new one, no restart", async () => {
    const before = await serverFingerprint(manager.url);
    await issueCert({ caDir: pki.caDir, role: "manager", name: "manager", ips: ["127.0.0.1"], dns: ["localhost"], out: join(managerFiles.cert, "..") });
    let now = before;
    for (let i = 0; i < 100 && now === before; i++) {
      await sleep(100);
      now = await serverFingerprint(manager.url);
    }
    assert.notEqual(now, before);
    assert.equal(now, new (await import("node:crypto")).X509Certificate(readFileSync(managerFiles.cert)).fingerprint256);
    assert.equal((await manager.api("GET", "/api/v1/users", { token: root })).status, 200);
  });

  test("a manager given another role's certificate refuses to start (components would refuse it)", async () => {
    const r = await runDamselfly(["manager", "--listen", "127.0.0.1:0", "--data-dir", join(dir, "wrong-role"), ...(await pki.args("scheduler", "sched-a"))], {
      timeoutMs: 20_000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr.toString(), /DF_ERR_CONFIG: .*scheduler certificate; the manager needs one of role manager/);
  });

  async function serverFingerprint(url: string): Promise<string> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: u.hostname, port: Number(u.port), ca }, () => {
        const fp = s.getPeerCertificate().fingerprint256;
        s.destroy();
        resolve(fp);
      });
      s.once("error", reject);
    });
  }
});

test("without TLS the manager refuses a non-loopback listen address", async () => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-mgr-bind-"));
  try {
    const r = await runDamselfly(["manager", "--listen", "0.0.0.0:0", "--data-dir", dir], { timeoutMs: 20_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /DF_ERR_INSECURE_BIND/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A TLS server with a certificate of our CA (of the wrong role) that counts
// the HTTP requests it is sent: an impostor of the manager or a scheduler.
async function fakeTlsServer(files: CertFiles, h2 = false): Promise<{ port: number; requests(): number; close(): Promise<void> }> {
  let n = 0;
  const opts = { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key), minVersion: "TLSv1.3" as const };
  const count = (_req: unknown, res: { end(): void }) => {
    n++;
    res.end();
  };
  const server = h2 ? http2.createSecureServer({ ...opts, allowHTTP1: true }, count) : (await import("node:https")).createServer(opts, count);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : 0,
    requests: () => n,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
