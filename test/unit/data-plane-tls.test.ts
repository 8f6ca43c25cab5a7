// The piece data plane over mutual TLS, on real sockets (127.0.0.1): only
// peer and seed-peer certificates of the cluster CA are served, a child
// refuses a server of another role, pieces go out with their signed digest
// and only when the task holds its fetcher's bundle, and a rotated
// certificate is used for new connections without a restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import tls from "node:tls";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { crc32Update } from "../../src/common/pieces.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { issueCert } from "../../src/common/tls/issue.js";
import { identityOfSocket } from "../../src/common/tls/roles.js";
import { PieceClient } from "../../src/peer/download/piece-client.js";
import { readSyncStream } from "../../src/peer/download/sync-client.js";
import { UploadServer } from "../../src/peer/upload/upload-server.js";
import { PIECE_DIGEST_HEADER, parsePieceRecord, type SyncMessage } from "../../src/protocol/data-plane.js";
import { decodeBundle, encodeRecord, sha256Hex, signBundle, signGrant, signPiece } from "../../src/protocol/trust.js";
import { makePki } from "../helpers/pki.js";
import { httpsGet } from "../helpers/tls-probe.js";
import { pollUntil, storedTask, tempDir } from "../helpers/store.js";

const log = pino({ level: "silent" });
const ID = "d".repeat(64);
const PIECE = 512 * 1024;

async function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t, "df-dp-tls-");
  const pki = await makePki(dir);
  const seedFiles = await pki.issue("seed-peer", "seed");
  const seed = TlsIdentity.load(seedFiles, { watch: false });
  const sched = TlsIdentity.load(await pki.issue("scheduler", "sched"), { watch: false });
  const { storage, task } = await storedTask(t, ID, PIECE * 3, PIECE, "df-dp-tls-store-");
  const data = [0, 1, 2].map((n) => Buffer.alloc(PIECE, n + 1));
  const m = seed.current();
  const grant = signGrant(sched.current(), ID, "seed-peer-id", m.leaf.fingerprint256);
  const bundle = signBundle(m, grant, PIECE * 3, PIECE);
  return { dir, pki, seedFiles, seed, storage, task, data, bundle, ca: readFileSync(seedFiles.ca) };
}

test("TLS upload server: peers and seed peers only; no certificate, another CA: no handshake; another role: 403 DF_ERR_PEER_ROLE", async (t) => {
  const s = await setup(t);
  const server = new UploadServer({ listen: "127.0.0.1:0", storage: s.storage, logger: log, uploadConcurrency: 2, tls: s.seed });
  await server.start();
  t.after(() => server.close());
  const port = server.address.port;
  const path = `/v1/tasks/${ID}/pieces/0`;
  // A task not held: 404 to a peer (the role was fine).
  const peer = await s.pki.issue("peer", "child");
  assert.equal((await httpsGet(port, `/v1/tasks/${"e".repeat(64)}/sync`, s.ca, peer)).status, 404);
  await assert.rejects(httpsGet(port, path, s.ca), "no client certificate: the handshake fails");
  const other = await makePki(join(s.dir, "other"));
  await assert.rejects(httpsGet(port, path, s.ca, await other.issue("peer", "child")), "a peer certificate of another CA: the handshake fails");
  for (const role of ["client", "scheduler", "manager"] as const) {
    const r = await httpsGet(port, path, s.ca, await s.pki.issue(role, `x-${role}`));
    assert.equal(r.status, 403, role);
    assert.equal(r.headers["x-damselfly-error"], "DF_ERR_PEER_ROLE", role);
  }
  assert.equal(server.stats.pieces, 0);
});

test("TLS upload server: a piece goes out with its signed digest, and only once the task holds its fetcher's bundle", async (t) => {
  const s = await setup(t);
  const m = s.seed.current();
  for (const [n, d] of s.data.entries()) {
    await s.task.writev(n * PIECE, [d]);
    const sig = signPiece(m, ID, n, d.length, sha256Hex(d)).sig;
    // Piece 2 has no record (as if fetched without a grant).
    const trust = n === 2 ? undefined : { sha256: sha256Hex(d), fetcher: m.leaf.fingerprint256, sig };
    await s.task.markPiece({ number: n, crc: crc32Update(d), length: d.length, ...(trust ? { trust } : {}) });
  }
  const server = new UploadServer({ listen: "127.0.0.1:0", storage: s.storage, logger: log, uploadConcurrency: 2, tls: s.seed });
  await server.start();
  t.after(() => server.close());
  const port = server.address.port;
  const child = await s.pki.issue("peer", "child");
  const childId = TlsIdentity.load(child, { watch: false });
  // No bundle yet: nothing is announced or served.
  assert.equal((await httpsGet(port, `/v1/tasks/${ID}/pieces/0`, s.ca, child)).status, 404);
  const msgs: SyncMessage[] = [];
  const ctrl = new AbortController();
  const sync = readSyncStream(
    {
      host: "127.0.0.1",
      port,
      path: `/v1/tasks/${ID}/sync`,
      connectTimeoutMs: 5_000,
      headTimeoutMs: 5_000,
      idleTimeoutMs: 60_000,
      signal: ctrl.signal,
      label: "seed",
      tls: () => childId.clientOptions({ roles: ["peer", "seed-peer"] }),
    },
    (msg) => {
      msgs.push(msg);
      return false;
    },
  ).catch(() => undefined);
  await pollUntil(() => server.stats.active === 0 && s.task.inUse > 0, "the sync stream to open");
  assert.deepEqual(
    msgs.filter((x) => x.type !== "ping"),
    [],
    "no bundle: no pieces, no info",
  );
  await s.task.bundles.add(s.bundle);
  await pollUntil(() => msgs.some((x) => x.type === "pieces"), "the bundle and its pieces");
  const bundleMsg = msgs.find((x) => x.type === "bundle");
  assert.ok(bundleMsg && bundleMsg.type === "bundle");
  assert.deepEqual(decodeBundle(bundleMsg.record), decodeBundle(encodeRecord(s.bundle)));
  const announced = msgs.flatMap((x) => (x.type === "pieces" ? x.pieces.map((p) => p[0]) : []));
  assert.deepEqual(announced.sort(), [0, 1], "piece 2 has no signed digest: not announced");
  ctrl.abort();
  await sync;
  const r = await httpsGet(port, `/v1/tasks/${ID}/pieces/1`, s.ca, child);
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(s.data[1]!));
  const rec = parsePieceRecord(String(r.headers[PIECE_DIGEST_HEADER]));
  assert.equal(rec?.sha256, sha256Hex(s.data[1]!));
  assert.equal(rec?.fetcher, m.leaf.fingerprint256);
  assert.equal((await httpsGet(port, `/v1/tasks/${ID}/pieces/2`, s.ca, child)).status, 404, "no record: not served");
});

test("a child's piece client refuses a server whose certificate is not a peer's or seed peer's", async (t) => {
  const dir = tempDir(t, "df-dp-role-");
  const pki = await makePki(dir);
  const child = TlsIdentity.load(await pki.issue("peer", "child"), { watch: false });
  const files = await pki.issue("scheduler", "not-a-peer");
  const server = tls.createServer(
    { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key), requestCert: true, rejectUnauthorized: true },
    (s) => s.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"),
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => server.close());
  const client = new PieceClient("127.0.0.1", (server.address() as { port: number }).port, {
    maxConnections: 1,
    connectTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    tls: () => child.clientOptions({ roles: ["peer", "seed-peer"] }),
  });
  t.after(() => client.close());
  const err = await new Promise<Error | undefined>((resolve) =>
    client.get("/x", { onStart: () => undefined, onData: () => undefined, onEnd: () => resolve(undefined), onError: resolve }),
  );
  assert.ok(err, "the request must fail");
  assert.match(err.message, /server is a scheduler/);
});

test("certificate rotation: files replaced mid-run; new data-plane connections see the new certificate on both sides", async (t) => {
  const dir = tempDir(t, "df-dp-rotate-");
  const pki = await makePki(dir);
  const caDir = pki.caDir;
  const serverOut = join(dir, "rot-seed");
  const clientOut = join(dir, "rot-child");
  await issueCert({ caDir, role: "seed-peer", name: "seed", ips: ["127.0.0.1"], out: serverOut });
  await issueCert({ caDir, role: "peer", name: "child", ips: ["127.0.0.1"], out: clientOut });
  const filesOf = (out: string) => ({ ca: join(out, "ca.crt"), cert: join(out, "tls.crt"), key: join(out, "tls.key") });
  const seed = TlsIdentity.load(filesOf(serverOut), { pollMs: 50 });
  const child = TlsIdentity.load(filesOf(clientOut), { pollMs: 50 });
  t.after(() => {
    seed.close();
    child.close();
  });
  const { storage } = await storedTask(t, ID, PIECE, PIECE, "df-dp-rotate-store-");
  const server = new UploadServer({ listen: "127.0.0.1:0", storage, logger: log, uploadConcurrency: 2, tls: seed });
  await server.start();
  t.after(() => server.close());
  const ca = readFileSync(join(serverOut, "ca.crt"));
  const before = (await httpsGet(server.address.port, "/healthy", ca, filesOf(clientOut))).serverFingerprint;
  assert.equal(before, seed.current().leaf.fingerprint256);
  await issueCert({ caDir, role: "seed-peer", name: "seed", ips: ["127.0.0.1"], out: serverOut });
  await pollUntil(() => seed.current().leaf.fingerprint256 !== before, "the upload server's identity to reload", 10_000);
  const after = await httpsGet(server.address.port, "/healthy", ca, filesOf(clientOut));
  assert.equal(after.status, 200);
  assert.notEqual(after.serverFingerprint, before, "a new connection gets the new certificate");
  assert.equal(after.serverFingerprint, seed.current().leaf.fingerprint256);

  // The child's side: each connection asks for its options, so a rotated
  // client certificate is what the next parent sees.
  const seen: string[] = [];
  const files = filesOf(serverOut);
  const probe = tls.createServer(
    { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key), requestCert: true, rejectUnauthorized: true },
    (s) => {
      seen.push(identityOfSocket(s)?.fingerprint ?? "none");
      s.end("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    },
  );
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  t.after(() => probe.close());
  const fetchOnce = async () => {
    const c = new PieceClient("127.0.0.1", (probe.address() as { port: number }).port, {
      maxConnections: 1,
      connectTimeoutMs: 5_000,
      idleTimeoutMs: 5_000,
      tls: () => child.clientOptions({ roles: ["peer", "seed-peer"] }),
    });
    await new Promise<void>((resolve, reject) => c.get("/x", { onStart: () => undefined, onData: () => undefined, onEnd: resolve, onError: reject }));
    c.close();
  };
  await fetchOnce();
  const oldChild = child.current().leaf.fingerprint256;
  await issueCert({ caDir, role: "peer", name: "child", ips: ["127.0.0.1"], out: clientOut });
  await pollUntil(() => child.current().leaf.fingerprint256 !== oldChild, "the child's identity to reload", 10_000);
  await fetchOnce();
  assert.deepEqual(seen, [oldChild, child.current().leaf.fingerprint256]);
});
