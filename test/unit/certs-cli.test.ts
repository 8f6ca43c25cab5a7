// `damselfly certs init|issue` as a user runs it (files, modes, exit codes),
// and the certificates `damselfly up` makes on its first start and keeps on
// later ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { ensureUpCertificates } from "../../src/cli/up-certs.js";
import { runDamselfly } from "../helpers/procs.js";

function tmp(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-certs-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (p: string) => statSync(p).mode & 0o777;

test("certs init writes the CA (key 0600) and refuses a second time, leaving the first intact", async (t) => {
  const dir = tmp(t);
  const ca = join(dir, "ca");
  const first = await runDamselfly(["certs", "init", "--out", ca]);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(first.stdout.toString().trim().split("\n"), [join(ca, "ca.crt"), join(ca, "ca.key")]);
  assert.equal(mode(join(ca, "ca.key")), 0o600);
  const key = readFileSync(join(ca, "ca.key"));
  const again = await runDamselfly(["certs", "init", "--out", ca]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /DF_ERR_USAGE: .*already holds a CA/);
  assert.deepEqual(readFileSync(join(ca, "ca.key")), key);
});

test("certs issue writes tls.crt, tls.key (0600) and ca.crt with the role URI; bad input exits 2 and writes nothing", async (t) => {
  const dir = tmp(t);
  const ca = join(dir, "ca");
  assert.equal((await runDamselfly(["certs", "init", "--out", ca])).code, 0);
  const out = join(dir, "node-1");
  const r = await runDamselfly([
    "certs",
    "issue",
    "--ca",
    ca,
    "--role",
    "seed-peer",
    "--name",
    "node-1",
    "--ip",
    "127.0.0.1",
    "--dns",
    "seed.local",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(mode(join(out, "tls.key")), 0o600);
  const cert = new X509Certificate(readFileSync(join(out, "tls.crt")));
  assert.match(cert.subjectAltName ?? "", /URI:spiffe:\/\/damselfly\/seed-peer\/node-1/);
  assert.match(cert.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
  assert.match(cert.subjectAltName ?? "", /DNS:seed\.local/);
  assert.deepEqual(readFileSync(join(out, "ca.crt")), readFileSync(join(ca, "ca.crt")));
  const id = TlsIdentity.load({ ca: join(out, "ca.crt"), cert: join(out, "tls.crt"), key: join(out, "tls.key") }, { watch: false });
  assert.deepEqual({ role: id.identity.role, name: id.identity.name }, { role: "seed-peer", name: "node-1" });

  const bad: [string[], RegExp][] = [
    [["--role", "root", "--name", "x"], /--role/],
    [["--role", "peer", "--name", "x", "--ip", "1.2.3"], /not an IP address/],
    [["--role", "peer", "--name", "a b"], /--name/],
    [["--role", "peer", "--name", "x", "--days", "0"], /--days/],
  ];
  for (const [args, why] of bad) {
    const b = await runDamselfly(["certs", "issue", "--ca", ca, ...args, "--out", join(dir, "bad")]);
    assert.equal(b.code, 2, `${args.join(" ")}: ${b.stderr}`);
    assert.match(b.stderr, why);
    assert.equal(existsSync(join(dir, "bad")), false, `${args.join(" ")} wrote files`);
  }
  const noCa = await runDamselfly(["certs", "issue", "--ca", join(dir, "none"), "--role", "peer", "--name", "x", "--out", join(dir, "bad")]);
  assert.equal(noCa.code, 2);
  assert.match(noCa.stderr, /certs init/);
});

test("up's certificates: made on the first start, the same on the next; a missing or renamed one is issued again by the same CA", async (t) => {
  const dir = tmp(t);
  const fp = (f: string) => new X509Certificate(readFileSync(f)).fingerprint256;
  const first = await ensureUpCertificates(dir, { seed: "h-seed", peer: "h-peer" });
  assert.equal(first.caFile, join(dir, "tls", "ca", "ca.crt"));
  assert.equal(mode(join(dir, "tls", "ca", "ca.key")), 0o600);
  const roles = Object.fromEntries(
    (["scheduler", "manager", "seed", "peer", "client"] as const).map((k) => {
      const id = TlsIdentity.load(first[k], { watch: false }).identity;
      return [k, `${id.role}/${id.name}`];
    }),
  );
  assert.deepEqual(roles, {
    scheduler: "scheduler/scheduler",
    manager: "manager/manager",
    seed: "seed-peer/h-seed",
    peer: "peer/h-peer",
    client: "client/up-client",
  });

  const second = await ensureUpCertificates(dir, { seed: "h-seed", peer: "h-peer" });
  assert.equal(fp(second.caFile), fp(first.caFile));
  assert.equal(fp(second.manager.cert), fp(first.manager.cert));

  const peerBefore = fp(first.peer.cert);
  const schedulerBefore = fp(first.scheduler.cert);
  unlinkSync(first.peer.key);
  const third = await ensureUpCertificates(dir, { seed: "other-seed", peer: "h-peer" });
  assert.equal(fp(third.caFile), fp(first.caFile));
  assert.notEqual(fp(third.peer.cert), peerBefore);
  assert.equal(TlsIdentity.load(third.seed, { watch: false }).identity.name, "other-seed");
  assert.equal(fp(third.scheduler.cert), schedulerBefore);

  // Half a CA is not silently replaced (every certificate would change).
  unlinkSync(join(dir, "tls", "ca", "ca.key"));
  await assert.rejects(ensureUpCertificates(dir, { seed: "h-seed", peer: "h-peer" }), /only one of ca\.crt and ca\.key/);
});
