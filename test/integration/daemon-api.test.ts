// The daemon's API as `get`, `cache` and the scheduler reach it: a Unix
// socket (mode 0660, a configurable group) by default, a TCP API only when
// asked — with mutual TLS and a role check per call — and loopback only
// without certificates.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { once } from "node:events";
import { chmodSync, mkdirSync, readFileSync, statSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { daemonv1, createRpcTransport } from "../../src/protocol/index.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { taskId } from "../../src/common/task-id.js";
import { makePki, type CertFiles } from "../helpers/pki.js";
import { codeOf } from "../helpers/rpc-code.js";
import { runDamselfly, runGet, spawnDamselfly, type Cleanup, type DamselflyProc, type LogLine } from "../helpers/procs.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { sha256File, taskDir, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const NOBODY = 65534;
const NOGROUP = 65534;

// A daemon without a scheduler (every download goes to the origin) with
// the given API listeners.
async function daemon(t: Cleanup, dir: string, name: string, args: readonly string[]): Promise<{ proc: DamselflyProc; ready: LogLine; dataDir: string }> {
  const dataDir = join(dir, name);
  const proc = spawnDamselfly(
    ["daemon", "--scheduler", "", "--data-dir", dataDir, "--upload-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", "--hostname", name, ...args],
    { t, name },
  );
  t.after(() => proc.stop("SIGTERM", 5_000));
  const ready = await proc.waitForLog("daemon ready", 20_000);
  return { proc, ready, dataDir };
}

async function origin(t: Cleanup): Promise<Origin> {
  const o = await startOrigin();
  t.after(() => o.close());
  return o;
}

describe("daemon API on a Unix socket", () => {
  test("mode 0660 with the configured group; get and cache through it; the store is private; a second daemon cannot take the socket over", async (t) => {
    const dir = tempDir(t, "df-api-sock-");
    const o = await origin(t);
    const data = o.addRandomFile("/sock/blob.bin", 3 * MiB + 5, "sock");
    const sock = join(dir, "run", "api.sock");
    const d = await daemon(t, dir, "sock", ["--listen", `unix:${sock}`, "--socket-group", String(NOGROUP)]);
    assert.equal(d.ready.api, `unix:${sock}`, "the ready line names the socket");
    assert.equal(d.ready.apiNetwork, undefined, "no TCP API unless asked");
    const st = statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, NOGROUP);

    const out = join(dir, "out.bin");
    const r = await runGet([o.url("/sock/blob.bin"), "-O", out, "--no-progress", "--daemon", `unix:${sock}`], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), sha256Hex(data));
    const list = await runDamselfly(["cache", "list", "--json", "--daemon", `unix:${sock}`], { timeoutMs: 30_000 });
    assert.equal(list.code, 0, list.stderr);
    const id = taskId({ url: o.url("/sock/blob.bin") });
    assert.deepEqual(
      (JSON.parse(list.stdout.toString()) as { tasks: { taskId: string }[] }).tasks.map((x) => x.taskId),
      [id],
    );

    // Only the daemon's user reads the store: another user gets the bytes streamed by the API.
    const tdir = taskDir(d.dataDir, id);
    assert.equal(statSync(join(d.dataDir, "tasks")).mode & 0o777, 0o700);
    assert.equal(statSync(tdir).mode & 0o777, 0o700);
    for (const f of ["data", "task.json", "pieces.log"]) assert.equal(statSync(join(tdir, f)).mode & 0o777, 0o600, f);

    const second = spawnDamselfly(
      [
        "daemon",
        "--scheduler",
        "",
        "--data-dir",
        join(dir, "second"),
        "--listen",
        `unix:${sock}`,
        "--upload-listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
      ],
      { t, name: "second" },
    );
    assert.equal(await second.exited, 3, second.stderr());
    assert.match(second.stderr(), /DF_ERR_CONFIG: another process serves the API socket/);
    const again = await runGet([o.url("/sock/blob.bin"), "-O", join(dir, "again.bin"), "--no-progress", "--daemon", `unix:${sock}`], { timeoutMs: 60_000 });
    assert.equal(again.code, 0, `the first daemon no longer serves its socket: ${again.stderr}`);
    assert.equal(o.requestCount("/sock/blob.bin"), 1);
  });

  test("get and cache without --daemon find the user's own daemon; a member of the socket's group may call it", async (t) => {
    if (process.getuid?.() !== 0) return t.skip("needs root to run get as another user");
    const probe = await runDamselfly(["--version"], { uid: NOBODY, gid: NOGROUP, timeoutMs: 20_000 });
    if (probe.code !== 0) return t.skip("user nobody cannot run this checkout");
    const home = tempDir(t, "df-api-home-");
    chmodSync(home, 0o755);
    const o = await origin(t);
    const data = o.addRandomFile("/home/blob.bin", MiB + 1, "home");
    // Where a daemon run by a user with this HOME listens by default.
    const sock = join(home, ".local", "share", "damselfly", "daemon.sock");
    await daemon(t, home, "home", ["--listen", `unix:${sock}`, "--socket-group", String(NOGROUP)]);
    for (const d of [".local", ".local/share", ".local/share/damselfly"]) chmodSync(join(home, d), 0o755);
    const outDir = join(home, "out");
    mkdirSync(outDir, { mode: 0o777 });
    chmodSync(outDir, 0o777);
    const as = { uid: NOBODY, gid: NOGROUP, env: { HOME: home }, timeoutMs: 60_000 };
    const r = await runGet([o.url("/home/blob.bin"), "-O", join(outDir, "blob.bin"), "--no-progress"], as);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(outDir, "blob.bin")), sha256Hex(data));
    const c = await runDamselfly(["cache", "list"], as);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout.toString(), /1 task\(s\)/);
  });
});

// A daemon that does not answer is "unavailable", as \`get\` reports it.
const codeOfApi = (p: Promise<unknown> | AsyncIterable<unknown>) => codeOf(p, "DF_ERR_DAEMON_UNAVAILABLE");

// What a raw HTTP/2 request with these TLS options gets: a status, or "refused".
// An ImportTask stream with no messages (the role check comes first).
async function* noParts(): AsyncGenerator<{ part: { case: undefined } }> {}

async function h2Status(url: string, options: http2.SecureClientSessionOptions): Promise<number | "refused"> {
  return new Promise((resolve) => {
    const s = http2.connect(url, options);
    const done = (v: number | "refused") => {
      s.destroy();
      resolve(v);
    };
    s.on("error", () => done("refused"));
    s.on("close", () => done("refused"));
    const req = s.request({ ":method": "POST", ":path": "/damselfly.daemon.v1.DaemonService/ListTasks", "content-type": "application/grpc", te: "trailers" });
    req.on("response", (h) => done(Number(h[":status"])));
    req.on("error", () => done("refused"));
    req.end();
  });
}

describe("daemon API over TCP with TLS", () => {
  test("mutual TLS: no certificate or another CA's is refused; each call checks the caller's role; TriggerTask only from a scheduler", async (t) => {
    const dir = tempDir(t, "df-api-tls-");
    const pki = await makePki(join(dir, "pki"));
    const other = await makePki(join(dir, "other-pki"));
    const o = await origin(t);
    const data = o.addRandomFile("/tls/blob.bin", 2 * MiB + 9, "tls");
    const sock = join(dir, "api.sock");
    const d = await daemon(t, dir, "tls-peer", [...(await pki.args("peer", "tls-peer")), "--listen", "127.0.0.1:0", "--listen", `unix:${sock}`]);
    assert.equal(d.ready.api, `unix:${sock}`);
    const url = `https://${String(d.ready.apiNetwork)}`;
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);

    const clientOf = (f: CertFiles) => {
      const identity = TlsIdentity.load(f, { watch: false });
      return createClient(daemonv1.DaemonService, createRpcTransport(url, { identity, server: { roles: ["peer", "seed-peer"] } }));
    };
    const client = clientOf(await pki.issue("client", "alice"));
    const scheduler = clientOf(await pki.issue("scheduler", "sched"));
    const peer = clientOf(await pki.issue("peer", "mallory"));
    const download = { url: o.url("/tls/blob.bin"), headers: {} };
    const unknown = "0".repeat(64);

    // The client role: reads and its own downloads, never a trigger.
    assert.equal(await codeOfApi(client.listTasks({})), "ok");
    assert.equal(await codeOfApi(client.statTask({ taskId: unknown })), "DF_ERR_TASK_NOT_FOUND");
    assert.equal(await codeOfApi(client.triggerTask({ taskId: "", download })), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOfApi(client.sourceDefaults({})), "ok");
    assert.equal(await codeOfApi(client.statCacheTask({ taskId: unknown })), "ok");
    // The scheduler: triggers, deletes and preheats (DownloadTask), never lists.
    assert.equal(await codeOfApi(scheduler.triggerTask({ taskId: "" })), "DF_ERR_INVALID_REQUEST", "the trigger passed the role check");
    assert.equal(await codeOfApi(scheduler.statTask({ taskId: unknown })), "DF_ERR_TASK_NOT_FOUND");
    assert.equal(await codeOfApi(scheduler.deleteTask({ taskId: unknown })), "ok");
    // (Another URL: the refused callers below must leave /tls/blob.bin untouched.)
    const preheat = { url: o.url("/tls/preheat.bin"), headers: {} };
    assert.notEqual(await codeOfApi(scheduler.downloadTask({ download: preheat })), "DF_ERR_PEER_ROLE", "a preheat passes the role check");
    assert.equal(await codeOfApi(scheduler.listTasks({})), "DF_ERR_PEER_ROLE");
    // Imports and the source defaults are a local client's, not a scheduler's.
    assert.equal(await codeOfApi(scheduler.importTask(noParts())), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOfApi(scheduler.sourceDefaults({})), "DF_ERR_PEER_ROLE");
    // Another peer: nothing.
    for (const call of [
      peer.listTasks({}),
      peer.statTask({ taskId: unknown }),
      peer.deleteTask({ taskId: unknown }),
      peer.triggerTask({ download }),
      peer.downloadTask({ download }),
    ])
      assert.equal(await codeOfApi(call), "DF_ERR_PEER_ROLE");
    // A peer can neither push content into this daemon's store nor read its cache or settings.
    assert.equal(await codeOfApi(peer.importTask(noParts())), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOfApi(peer.statCacheTask({ taskId: unknown })), "DF_ERR_PEER_ROLE");
    assert.equal(await codeOfApi(peer.sourceDefaults({})), "DF_ERR_PEER_ROLE");
    assert.equal(o.requestCount("/tls/blob.bin"), 0, "a refused caller made the daemon fetch");

    // No certificate, or one of another CA: no session at all.
    const ca = readFileSync((await pki.issue("client", "alice")).ca);
    assert.equal(await h2Status(url, { ca }), "refused");
    const stranger = await other.issue("client", "alice");
    assert.equal(await h2Status(url, { ca, cert: readFileSync(stranger.cert), key: readFileSync(stranger.key) }), "refused");

    // get with a client certificate; with a peer's it is refused.
    const tlsArgs = async (role: "client" | "peer", name: string) => {
      const f = await pki.issue(role, name);
      return ["--tls-ca", f.ca, "--tls-cert", f.cert, "--tls-key", f.key];
    };
    const out = join(dir, "out.bin");
    const ok = await runGet([o.url("/tls/blob.bin"), "-O", out, "--no-progress", "--daemon", url, ...(await tlsArgs("client", "alice"))], {
      timeoutMs: 60_000,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await sha256File(out), sha256Hex(data));
    const wrong = await runGet([o.url("/tls/blob.bin"), "-O", join(dir, "no.bin"), "--no-progress", "--daemon", url, ...(await tlsArgs("peer", "mallory"))], {
      timeoutMs: 60_000,
    });
    assert.equal(wrong.code, 9, wrong.stderr);
    assert.match(wrong.stderr, /DF_ERR_PEER_ROLE: DownloadTask needs a client or scheduler certificate/);
    const noCert = await runGet([o.url("/tls/blob.bin"), "-O", join(dir, "no.bin"), "--no-progress", "--daemon", url], { timeoutMs: 30_000 });
    assert.equal(noCert.code, 2, noCert.stderr);
    const cache = await runDamselfly(["cache", "list", "--daemon", url, ...(await tlsArgs("client", "alice"))], { timeoutMs: 30_000 });
    assert.equal(cache.code, 0, cache.stderr);
    // The client's download and the (failed) preheat of a missing file.
    assert.match(cache.stdout.toString(), /2 task\(s\)/);
  });

  test("get sends nothing to an https daemon API whose certificate is not a peer's or a seed peer's", async (t) => {
    const dir = tempDir(t, "df-api-impostor-");
    const pki = await makePki(join(dir, "pki"));
    const f = await pki.issue("scheduler", "impostor");
    let streams = 0;
    const server = http2.createSecureServer({ ca: readFileSync(f.ca), cert: readFileSync(f.cert), key: readFileSync(f.key), requestCert: true });
    server.on("stream", (s) => {
      streams++;
      s.respond({ ":status": 500 });
      s.end();
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    t.after(() => server.close());
    const c = await pki.issue("client", "alice");
    const r = await runGet(
      [
        "http://127.0.0.1:1/secret",
        "-O",
        join(dir, "out"),
        "-H",
        "Authorization: Bearer do-not-leak",
        "--no-progress",
        "--daemon",
        `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
        "--tls-ca",
        c.ca,
        "--tls-cert",
        c.cert,
        "--tls-key",
        c.key,
      ],
      { timeoutMs: 30_000 },
    );
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /server is a scheduler, expected peer or seed-peer/);
    assert.equal(streams, 0, "the request (URL and credentials) reached an impostor");
  });
});

describe("daemon listeners without TLS", () => {
  test("the TCP API and the proxy listen on loopback only unless --insecure", async (t) => {
    const dir = tempDir(t, "df-api-bind-");
    for (const [what, args] of [
      ["API", ["--listen", "0.0.0.0:0"]],
      ["proxy", ["--listen", "127.0.0.1:0", "--proxy-listen", "0.0.0.0:0"]],
    ] as const) {
      const r = await runDamselfly(
        ["daemon", "--scheduler", "", "--data-dir", join(dir, what), "--upload-listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0", ...args],
        {
          timeoutMs: 30_000,
        },
      );
      assert.equal(r.code, 3, `${what}: ${r.stderr}`);
      assert.match(r.stderr, /DF_ERR_INSECURE_BIND/, what);
    }
  });
});
