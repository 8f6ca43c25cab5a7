// The zero-trust building blocks: certificates with roles, their loading and
// rotation, and the signed records a child checks pieces against.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCa, issueCert } from "../../src/common/tls/issue.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { identityFromSan } from "../../src/common/tls/roles.js";
import { checkBind } from "../../src/common/tls/bind-policy.js";
import {
  decodeBundle,
  decodeGrant,
  encodeRecord,
  sha256Hex,
  signBundle,
  signGrant,
  signPiece,
  verifyBundle,
  verifyPieceDigest,
} from "../../src/protocol/trust.js";

const MiB = 1024 * 1024;

async function pki() {
  const dir = mkdtempSync(join(tmpdir(), "df-tls-"));
  await createCa(join(dir, "ca"));
  const load = async (role: "scheduler" | "peer" | "seed-peer" | "client", name: string, caDir = join(dir, "ca")) => {
    const out = join(dir, name);
    await issueCert({ caDir, role, name, ips: ["127.0.0.1"], out });
    return TlsIdentity.load({ ca: join(out, "ca.crt"), cert: join(out, "tls.crt"), key: join(out, "tls.key") }, { watch: false });
  };
  return { dir, load, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test("certs: the CA key and component keys are private; the role is in the certificate; a second init refuses to overwrite", async () => {
  const p = await pki();
  try {
    assert.equal(statSync(join(p.dir, "ca", "ca.key")).mode & 0o777, 0o600);
    const s = await p.load("scheduler", "sched-1");
    assert.equal(statSync(join(p.dir, "sched-1", "tls.key")).mode & 0o777, 0o600);
    assert.deepEqual({ role: s.identity.role, name: s.identity.name }, { role: "scheduler", name: "sched-1" });
    await assert.rejects(createCa(join(p.dir, "ca")), /already holds a CA/);
  } finally {
    p.done();
  }
});

test("roles: one role URI names the role; none, two, or an unknown role name nothing", () => {
  assert.equal(identityFromSan("DNS:a, URI:spiffe://damselfly/peer/n1", "f")?.role, "peer");
  assert.equal(identityFromSan("DNS:a", "f"), undefined);
  assert.equal(identityFromSan("URI:spiffe://damselfly/root/n1", "f"), undefined);
  assert.equal(identityFromSan("URI:spiffe://damselfly/peer/a, URI:spiffe://damselfly/scheduler/b", "f"), undefined);
});

test("bind policy: without TLS only loopback, unless --insecure", () => {
  assert.doesNotThrow(() => checkBind("upload", "127.0.0.1", false, false));
  assert.doesNotThrow(() => checkBind("upload", "0.0.0.0", true, false));
  assert.throws(() => checkBind("upload", "0.0.0.0", false, false), /DF_ERR_INSECURE_BIND|without TLS/);
  assert.doesNotThrow(() => checkBind("upload", "0.0.0.0", false, true));
});

test("trust: a child accepts digests only from the fetcher a scheduler granted, for that task, with bounded geometry", async () => {
  const p = await pki();
  try {
    const sched = await p.load("scheduler", "sched");
    const fetcher = await p.load("seed-peer", "seed");
    const liar = await p.load("peer", "liar");
    const child = await p.load("peer", "child");
    const fm = fetcher.current();
    const grant = decodeGrant(encodeRecord(signGrant(sched.current(), "task1", "peer1", fm.leaf.fingerprint256)));
    const bundle = decodeBundle(encodeRecord(signBundle(fm, grant, 10 * MiB, 4 * MiB)));
    const f = verifyBundle(child, bundle, "task1", 1024 * MiB);
    const data = Buffer.alloc(4 * MiB, 7);
    const d = signPiece(fm, "task1", 0, data.length, sha256Hex(data));
    assert.ok(verifyPieceDigest(f, "task1", d));
    // The same record for another task, piece or digest does not verify.
    assert.ok(!verifyPieceDigest(f, "task2", d));
    assert.ok(!verifyPieceDigest(f, "task1", { ...d, number: 1 }));
    assert.ok(!verifyPieceDigest(f, "task1", { ...d, sha256: sha256Hex(Buffer.alloc(4, 1)) }));
    // A member signing for itself under someone else's grant, or granting itself.
    assert.throws(() => signBundle(liar.current(), grant, 10 * MiB, 4 * MiB), /another certificate/);
    const forged = { ...bundle, fetcherCert: liar.current().cert.toString() };
    assert.throws(() => verifyBundle(child, forged, "task1", 1024 * MiB), /not the one granted/);
    const selfGrant = signGrant(liar.current(), "task1", "p", liar.current().leaf.fingerprint256);
    assert.throws(() => verifyBundle(child, signBundle(liar.current(), selfGrant, 10 * MiB, 4 * MiB), "task1", 1024 * MiB), /not scheduler/);
    // Geometry out of bounds, or for another task.
    assert.throws(() => verifyBundle(child, signBundle(fm, grant, 10 * MiB, 64 * 1024), "task1", 1024 * MiB), /DF_ERR_GEOMETRY_INVALID|piece length/);
    assert.throws(() => verifyBundle(child, signBundle(fm, grant, 16 * 1024 * MiB, 4 * MiB), "task1", 1024 * MiB), /content length/);
    assert.throws(() => verifyBundle(child, bundle, "task2", 1024 * MiB), /another task/);
    // A certificate of another CA.
    const other = await pki();
    try {
      const stranger = await other.load("scheduler", "sched");
      const g2 = signGrant(stranger.current(), "task1", "peer1", fm.leaf.fingerprint256);
      assert.throws(() => verifyBundle(child, signBundle(fm, g2, 10 * MiB, 4 * MiB), "task1", 1024 * MiB), /cluster CA/);
    } finally {
      other.done();
    }
  } finally {
    p.done();
  }
});

test("identity: replaced files are picked up; a half-written set is ignored until it matches", async () => {
  const p = await pki();
  try {
    await issueCert({ caDir: join(p.dir, "ca"), role: "peer", name: "n", out: join(p.dir, "n") });
    const files = { ca: join(p.dir, "n", "ca.crt"), cert: join(p.dir, "n", "tls.crt"), key: join(p.dir, "n", "tls.key") };
    const id = TlsIdentity.load(files, { watch: false });
    const before = id.current().leaf.fingerprint256;
    const reloaded = new Promise((r) => id.once("reload", r));
    await issueCert({ caDir: join(p.dir, "ca"), role: "peer", name: "n", out: join(p.dir, "n") });
    assert.equal(id.reload(), true);
    await reloaded;
    assert.notEqual(id.current().leaf.fingerprint256, before);
    // Key of one certificate, certificate of another: keep the current one.
    const cur = id.current().leaf.fingerprint256;
    await issueCert({ caDir: join(p.dir, "ca"), role: "peer", name: "n", out: join(p.dir, "m") });
    rmSync(files.key);
    const { copyFileSync } = await import("node:fs");
    copyFileSync(join(p.dir, "m", "tls.key"), files.key);
    assert.equal(id.reload(), false);
    assert.equal(id.current().leaf.fingerprint256, cur);
  } finally {
    p.done();
  }
});
