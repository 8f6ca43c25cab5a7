// SSRF, rewritten as tests: a URL on an address the egress policy denies is
// never fetched, whoever asks (the local API, the scheduler's trigger, the
// proxy) and however it is reached (directly, by a redirect). The "metadata
// service" is a server on 127.0.0.2, configured as denied: no traffic ever
// goes to a real link-local or metadata address. And `get` falls back to the
// origin when the scheduler reports the task failed, as the proxy does.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import net, { type AddressInfo } from "node:net";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createRpcTransport, daemonv1 } from "../../src/protocol/index.js";
import { startCluster, type Cluster, type DaemonHandle } from "../helpers/cluster.js";
import { randomBytesSeeded, startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import type { Cleanup } from "../helpers/procs.js";
import { getSummary, logTail, pollUntil, sha256File, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const DENY = { DAMSELFLY_DAEMON_SOURCE_EGRESS_DENY: "127.0.0.2/32" };

async function metadataService(t: Cleanup): Promise<Origin> {
  const o = await startOrigin({ host: "127.0.0.2" });
  t.after(() => o.close());
  o.addFile("/latest/meta-data/iam/security-credentials/role", Buffer.from('{"SecretAccessKey":"do-not-leak"}'));
  return o;
}

// 127.0.0.1: every path answers 302 to `to` + the path.
async function redirector(t: Cleanup, to: string): Promise<{ url: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.writeHead(302, { location: `${to}${req.url}` }).end();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

function failedWith(d: DaemonHandle, code: string): boolean {
  return d.proc.logs.some((l) => l.msg === "task download failed" && l.code === code);
}

// The proxy's answer to a CONNECT: its status line.
async function connectStatus(proxy: string, target: string): Promise<string> {
  const u = new URL(proxy);
  const s = net.connect(Number(u.port), u.hostname);
  await once(s, "connect");
  s.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
  const [chunk] = (await once(s, "data")) as [Buffer];
  s.destroy();
  return chunk.toString("latin1").split("\r\n")[0]!;
}

describe("egress policy (SSRF)", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let seed: DaemonHandle;
  let peer: DaemonHandle;

  test("setup: a seed and a peer that deny 127.0.0.2", async (t) => {
    cluster = await startCluster({ peers: 1, seed: true, env: DENY, schedulerArgs: ["--seed-wait", "60s"] });
    seed = cluster.seed!;
    peer = cluster.peers[0]!;
    t.diagnostic(`seed api ${seed.apiUrl}`);
  });

  test("a download through the peer's API of a denied URL fails with DF_ERR_EGRESS_DENIED: the seed the scheduler triggered refused it, and so did the peer", async (t) => {
    const meta = await metadataService(t);
    const dir = tempDir(t, "df-ssrf-api-");
    const r = await peer.get([meta.url("/latest/meta-data/iam/security-credentials/role"), "-O", join(dir, "creds"), "--no-progress"], { timeoutMs: 60_000 });
    assert.equal(r.code, 9, `${r.stderr}\n${logTail(peer)}\n${logTail(seed)}`);
    assert.match(r.stderr, /^damselfly get: DF_ERR_EGRESS_DENIED: origin 127\.0\.0\.2 is denied by the egress policy: egress deny 127\.0\.0\.2\/32$/m);
    await pollUntil(() => failedWith(seed, "DF_ERR_EGRESS_DENIED"), "the triggered seed refusing the URL", 30_000);
    assert.ok(
      seed.proc.logs.some((l) => l.msg === "task triggered by the scheduler"),
      logTail(seed),
    );
    assert.equal(meta.requestCount(), 0, "the denied address was asked");
  });

  test("TriggerTask as a scheduler sends it, for a denied URL: the seed refuses to fetch", async (t) => {
    const meta = await metadataService(t);
    const seedApi = createClient(daemonv1.DaemonService, createRpcTransport(seed.apiUrl));
    const before = seed.proc.logs.filter((l) => l.msg === "task download failed").length;
    await seedApi.triggerTask({ download: { url: meta.url("/latest/user-data"), headers: {} } });
    await pollUntil(
      () => seed.proc.logs.filter((l) => l.msg === "task download failed" && l.code === "DF_ERR_EGRESS_DENIED").length > before,
      "the seed refusing the triggered URL",
      30_000,
    );
    assert.equal(meta.requestCount(), 0);
  });

  test("a redirect to a denied address is refused (get, and the proxy's forward path and tunnels)", async (t) => {
    const meta = await metadataService(t);
    const hop = await redirector(t, meta.baseUrl);
    const dir = tempDir(t, "df-ssrf-redirect-");
    const r = await peer.get([`${hop.url}/latest/meta-data`, "-O", join(dir, "x"), "--no-progress"], { timeoutMs: 60_000 });
    assert.equal(r.code, 9, `${r.stderr}\n${logTail(peer)}`);
    assert.match(r.stderr, /DF_ERR_EGRESS_DENIED/);
    assert.ok(hop.hits() >= 1, "the allowed first hop was asked");

    // The proxy: an absolute-form request, and a CONNECT tunnel.
    const forwarded = await rawProxyGet(peer.proxyUrl, meta.url("/latest/meta-data"));
    assert.match(forwarded, /^HTTP\/1\.1 403 /);
    assert.match(forwarded, /x-damselfly-error: DF_ERR_EGRESS_DENIED/i);
    assert.match(await connectStatus(peer.proxyUrl, `127.0.0.2:${meta.port}`), /^HTTP\/1\.1 403 /);
    assert.equal(meta.requestCount(), 0, "the denied address was asked");
  });

  test("teardown", async () => {
    await cluster?.stop();
  });
});

// GET of an absolute URL through the proxy, raw: the proxy's own answer.
async function rawProxyGet(proxy: string, url: string): Promise<string> {
  const u = new URL(proxy);
  const s = net.connect(Number(u.port), u.hostname);
  await once(s, "connect");
  s.write(`GET ${url} HTTP/1.1\r\nhost: ${new URL(url).host}\r\nconnection: close\r\n\r\n`);
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts).toString("latin1");
}

// An origin whose first answer for each path is a 404 (what the seed, asked
// first, hears: a transient 404, or one a liar reported), then the file.
async function firstAnswer404(
  t: Cleanup,
  files: Record<string, Buffer>,
): Promise<{ url: (p: string) => string; requests: (p: string) => number; sent: (p: string) => number }> {
  const requests = new Map<string, number>();
  const sent = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? "";
    const data = files[path];
    const n = (requests.get(path) ?? 0) + 1;
    requests.set(path, n);
    if (!data || n === 1) return res.writeHead(404).end("not found");
    const m = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ""));
    const start = m ? Number(m[1]) : 0;
    const end = m?.[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
    const body = data.subarray(start, end + 1);
    res.writeHead(m ? 206 : 200, { "content-length": body.length, ...(m ? { "content-range": `bytes ${start}-${end}/${data.length}` } : {}) });
    sent.set(path, (sent.get(path) ?? 0) + body.length);
    res.end(req.method === "HEAD" ? undefined : body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url: (p) => base + p, requests: (p) => requests.get(p) ?? 0, sent: (p) => sent.get(p) ?? 0 };
}

describe("get falls back to the origin on taskFailed", { timeout: 180_000 }, () => {
  test("the seed the scheduler sent to the origin reports a 404 and the scheduler fails the task: the peer asks the origin itself", async (t) => {
    const size = 6 * MiB + 3;
    const a = randomBytesSeeded(size, "fallback-a");
    const o = await firstAnswer404(t, { "/a.bin": a, "/b.bin": randomBytesSeeded(MiB, "fallback-b") });
    const dir = tempDir(t, "df-taskfailed-");
    const cluster = await startCluster({ peers: 1, seed: true, t, schedulerArgs: ["--seed-wait", "60s"] });
    const [seed, peer] = [cluster.seed!, cluster.peers[0]!];

    const out = join(dir, "a.bin");
    const r = await peer.get([o.url("/a.bin"), "-O", out, "--no-progress"], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${r.stderr}\n${logTail(peer)}\n${logTail(seed)}`);
    assert.equal(await sha256File(out), sha256Hex(a));
    assert.ok(failedWith(seed, "DF_ERR_SOURCE_STATUS"), `the seed was not triggered or did not fail:\n${logTail(seed)}`);
    assert.ok(
      peer.proc.logs.some((l) => l.msg === "scheduler reported the task failed: fetching from the origin ourselves"),
      `the peer did not hear taskFailed:\n${logTail(peer)}`,
    );
    assert.equal(getSummary(r.stderr)?.fromPeers, "0 B", r.stderr);
    assert.equal(o.sent("/a.bin"), size, "the origin sent the file once");

    // With back-to-source disabled, the reported failure stands.
    const off = await peer.get([o.url("/b.bin"), "-O", join(dir, "b.bin"), "--no-progress", "--disable-back-to-source"], { timeoutMs: 60_000 });
    assert.equal(off.code, 4, `${off.stderr}\n${logTail(peer)}`);
    assert.match(off.stderr, /DF_ERR_SOURCE_STATUS: .*\b404\b/);
    assert.equal(o.requests("/b.bin"), 1, "only the seed asked the origin");
  });
});
