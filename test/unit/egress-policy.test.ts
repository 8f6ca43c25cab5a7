// The egress policy of origin fetches (SSRF): which addresses are denied,
// that the check applies to the address actually connected to (literal,
// resolved, or reached through a redirect), and that nothing is sent to a
// denied address. The "denied" servers listen on 127.0.0.2, configured as
// denied: no traffic ever goes to a real link-local or metadata address.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { parseCidr, parseIp, contains } from "../../src/common/cidr.js";
import { EgressPolicy, type Lookup } from "../../src/common/egress.js";
import { HttpSource } from "../../src/peer/source/http-source.js";
import { BlobAccess } from "../../src/peer/proxy/blob-access.js";
import { DamselflyError } from "../../src/common/errors.js";

interface CountingServer {
  url: string;
  port: number;
  connections: number;
  requests: http.IncomingMessage[];
  close(): Promise<void>;
}

async function serve(
  t: { after: (fn: () => unknown) => void },
  host: string,
  answer: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  port = 0,
): Promise<CountingServer> {
  const s: CountingServer = { url: "", port: 0, connections: 0, requests: [], close: async () => undefined };
  const server = http.createServer((req, res) => {
    s.requests.push(req);
    answer(req, res);
  });
  server.on("connection", () => s.connections++);
  server.listen(port, host);
  await once(server, "listening");
  s.port = (server.address() as AddressInfo).port;
  s.url = `http://${host}:${s.port}`;
  s.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  t.after(() => s.close());
  return s;
}

const denies = (p: EgressPolicy, address: string) => p.denies(parseIp(address)!) !== undefined;

async function fetchError(source: HttpSource, url: string): Promise<DamselflyError> {
  try {
    const r = await source.fetch(url, {}, undefined);
    r.body.destroy();
  } catch (err) {
    return DamselflyError.from(err);
  }
  assert.fail(`fetching ${url} succeeded`);
}

test("addresses: IPv4, IPv6, IPv4 inside IPv6 (mapped, NAT64) and zones parse; CIDR blocks contain what they should", () => {
  assert.deepEqual(parseIp("169.254.169.254"), { v: 4, n: 0xa9fea9fen });
  assert.deepEqual(parseIp("::ffff:169.254.169.254"), { v: 4, n: 0xa9fea9fen }, "IPv4-mapped is the IPv4 address");
  assert.deepEqual(parseIp("::ffff:a9fe:a9fe"), { v: 4, n: 0xa9fea9fen });
  assert.deepEqual(parseIp("64:ff9b::169.254.169.254"), { v: 4, n: 0xa9fea9fen }, "NAT64 is the IPv4 address");
  assert.deepEqual(parseIp("[fe80::1%eth0]"), { v: 6, n: (0xfe80n << 112n) | 1n });
  assert.deepEqual(parseIp("::1"), { v: 6, n: 1n });
  assert.equal(parseIp("fd00:ec2::254")?.n, (0xfd00n << 112n) | (0xec2n << 96n) | 0x254n);
  assert.equal(parseIp("metadata.google.internal"), undefined);
  assert.ok(contains(parseCidr("10.0.0.0/8"), parseIp("10.200.1.1")!));
  assert.ok(!contains(parseCidr("10.0.0.0/8"), parseIp("11.0.0.1")!));
  assert.ok(contains(parseCidr("fe80::/10"), parseIp("febf::1")!));
  assert.ok(!contains(parseCidr("fe80::/10"), parseIp("fec0::1")!));
  assert.ok(contains(parseCidr("0.0.0.0/0"), parseIp("8.8.8.8")!));
  assert.equal(parseCidr("127.0.0.2").bits, 32);
  for (const bad of ["10.0.0.0/33", "fe80::/129", "nope", "10.0.0.0/x", "10.0.0/8"]) assert.throws(() => parseCidr(bad), /CIDR|prefix/, bad);
});

test("policy: link-local and metadata denied always (IPv4 forms inside IPv6 too); loopback and private ranges allowed unless denied; the longest match decides", () => {
  const p = new EgressPolicy();
  for (const a of [
    "169.254.169.254",
    "169.254.170.2",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "0.0.0.0",
    "::",
  ])
    assert.ok(denies(p, a), `${a} must be denied by default`);
  for (const a of ["127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.100.100.201", "8.8.8.8", "2001:db8::1"])
    assert.ok(!denies(p, a), `${a} must be allowed by default`);

  const one = new EgressPolicy({ allow: [], deny: ["127.0.0.2/32"] });
  assert.ok(denies(one, "127.0.0.2") && denies(one, "::ffff:127.0.0.2"));
  assert.ok(!denies(one, "127.0.0.1"));

  // Deny a range but keep one address of it; allow one metadata-range address back.
  const mixed = new EgressPolicy({ allow: ["127.0.0.1", "169.254.170.2/32"], deny: ["127.0.0.0/8", "10.0.0.0/8"] });
  assert.ok(!denies(mixed, "127.0.0.1"));
  assert.ok(denies(mixed, "127.0.0.2") && denies(mixed, "10.9.9.9"));
  assert.ok(!denies(mixed, "169.254.170.2"), "an operator's allow of one address overrides the built-in /16");
  assert.ok(denies(mixed, "169.254.169.254"), "...and only that address");
  // The same block allowed and denied by the operator: denied.
  assert.ok(denies(new EgressPolicy({ allow: ["10.0.0.0/8"], deny: ["10.0.0.0/8"] }), "10.1.1.1"));
  // A built-in block allowed whole by the operator at the same length: allowed.
  assert.ok(!denies(new EgressPolicy({ allow: ["169.254.0.0/16"], deny: [] }), "169.254.169.254"));
  assert.throws(
    () => p.check("meta", "169.254.169.254"),
    (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_EGRESS_DENIED" && /built-in deny 169\.254\.0\.0\/16/.test(e.message),
  );
});

test("origin fetches: a denied literal address, a redirect to one and a name resolving to one are refused before any byte is sent there", async (t) => {
  const secret = await serve(t, "127.0.0.2", (_req, res) => res.end("instance credentials"));
  const redirector = await serve(t, "127.0.0.1", (req, res) => res.writeHead(302, { location: `${secret.url}/latest${req.url}` }).end());
  // A resolver that answers what an attacker's DNS would.
  const lookup: Lookup = (hostname, _o, cb) => cb(null, hostname === "rebind.test" ? [{ address: "127.0.0.2", family: 4 }] : []);
  const source = new HttpSource({ timeoutMs: 5_000, egress: new EgressPolicy({ allow: [], deny: ["127.0.0.2/32"] }, lookup) });
  t.after(() => source.close());

  const direct = await fetchError(source, `${secret.url}/latest/meta-data`);
  assert.equal(direct.code, "DF_ERR_EGRESS_DENIED", direct.message);
  assert.equal(direct.temporary, false);
  const hop = await fetchError(source, `${redirector.url}/meta-data`);
  assert.equal(hop.code, "DF_ERR_EGRESS_DENIED", hop.message);
  assert.equal(redirector.requests.length, 1, "the first hop was allowed and asked");
  const rebound = await fetchError(source, `http://rebind.test:${secret.port}/latest/meta-data`);
  assert.equal(rebound.code, "DF_ERR_EGRESS_DENIED", rebound.message);
  assert.match(rebound.message, /rebind\.test \(127\.0\.0\.2\)/);
  assert.equal(secret.connections, 0, "a denied address received a connection");
});

test("origin fetches: a name resolving to a denied and an allowed address connects to the allowed one only", async (t) => {
  const allowed = await serve(t, "127.0.0.1", (_req, res) => res.end("public"));
  const denied = await serve(t, "127.0.0.2", (_req, res) => res.end("secret"), allowed.port).catch(() => undefined);
  if (!denied) return t.skip("port taken on 127.0.0.2");
  const lookup: Lookup = (_h, _o, cb) =>
    cb(null, [
      { address: "127.0.0.2", family: 4 },
      { address: "127.0.0.1", family: 4 },
    ]);
  const source = new HttpSource({ timeoutMs: 5_000, egress: new EgressPolicy({ allow: [], deny: ["127.0.0.2/32"] }, lookup) });
  t.after(() => source.close());
  for (let i = 0; i < 3; i++) {
    const r = await source.fetch(`http://both.test:${allowed.port}/x`, {}, undefined);
    const chunks: Buffer[] = [];
    for await (const c of r.body) chunks.push(Buffer.from(c));
    assert.equal(Buffer.concat(chunks).toString(), "public");
  }
  assert.equal(denied.connections, 0);
});

test("proxy CONNECT tunnels go through the policy too", async (t) => {
  const secret = await serve(t, "127.0.0.2", (_req, res) => res.end("x"));
  const p = new EgressPolicy({ allow: [], deny: ["127.0.0.2/32"] });
  const socket = p.connect("127.0.0.2", secret.port);
  const [err] = (await once(socket, "error")) as [DamselflyError];
  assert.equal(err.code, "DF_ERR_EGRESS_DENIED");
  const open = p.connect("127.0.0.1", (await serve(t, "127.0.0.1", (_q, r) => r.end())).port);
  await once(open, "connect");
  open.destroy();
  assert.equal(secret.connections, 0);
});

test("registry access check: only a final 200/206 is a yes; redirects are followed through the policy, without credentials at another origin", async (t) => {
  const blob = "b".repeat(1000);
  const storageAuth: (string | undefined)[] = [];
  const storage = await serve(t, "127.0.0.1", (req, res) => {
    storageAuth.push(req.headers.authorization);
    if (req.url?.startsWith("/signed") && req.headers.range === "bytes=0-0") res.writeHead(206, { "content-range": `bytes 0-0/${blob.length}` }).end("b");
    else res.writeHead(403).end();
  });
  const private401 = await serve(t, "127.0.0.1", (_req, res) => res.writeHead(401, { "www-authenticate": 'Basic realm="x"' }).end());
  const secret = await serve(t, "127.0.0.2", (_req, res) => res.end());
  const registry = await serve(t, "127.0.0.1", (req, res) => {
    const to: Record<string, string> = {
      "/ok": "",
      "/to-storage": `${storage.url}/signed`,
      "/to-private": `${private401.url}${req.url}`,
      "/to-denied": `${secret.url}/x`,
      "/loop": "/loop",
      "/no-location": "none",
    };
    const target = to[req.url ?? ""];
    if (target === "") res.writeHead(200, { "content-length": String(blob.length) }).end();
    else if (target === "none") res.writeHead(307).end();
    else if (target) res.writeHead(307, { location: target }).end();
    else res.writeHead(404).end();
  });
  const source = new HttpSource({ timeoutMs: 5_000, egress: new EgressPolicy({ allow: [], deny: ["127.0.0.2/32"] }) });
  t.after(() => source.close());
  const access = new BlobAccess({ dispatcher: source.dispatcher, ttlMs: 60_000, timeoutMs: 5_000 });
  const check = (path: string) => access.check(`${registry.url}${path}`, { authorization: "Bearer tenant-a" }, new AbortController().signal);

  assert.deepEqual(await check("/ok"), { allowed: true, size: blob.length });
  assert.deepEqual(await check("/to-storage"), { allowed: true, size: blob.length });
  assert.deepEqual(storageAuth, [undefined], "credentials went to another origin");
  assert.deepEqual(await check("/to-private"), { allowed: false, status: 401 }, "a redirect to a registry that refuses is a no");
  assert.deepEqual(await check("/no-location"), { allowed: false, status: 307 });
  assert.deepEqual(await check("/loop"), { allowed: false, status: 508 });
  assert.deepEqual(await check("/missing"), { allowed: false, status: 404 });
  await assert.rejects(check("/to-denied"), (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_EGRESS_DENIED");
  assert.equal(secret.connections, 0);
});
