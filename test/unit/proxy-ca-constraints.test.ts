// The daemon's own proxy CA: a one-year root with pathLen 0 that may certify
// only the intercepted hosts when the rules name them literally (X.509 name
// constraints, enforced by openssl here), made anew when it nears its end or
// when the hosts change; an operator's CA is loaded as it is.
import { test } from "node:test";
import { selfSignedArgs } from "../helpers/pki.js";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { CertificateAuthority } from "../../src/peer/proxy/ca.js";
import { permittedNames } from "../../src/peer/proxy/ca-constraints.js";

const log = pino({ level: "silent" });

function files(t: { after(fn: () => void): void }): { certFile: string; keyFile: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-ca-nc-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { certFile: join(dir, "ca.crt"), keyFile: join(dir, "ca.key"), dir };
}

function extensions(pem: string): string {
  return execFileSync("openssl", ["x509", "-noout", "-ext", "basicConstraints,nameConstraints"], { input: pem }).toString();
}

// openssl's verdict on a leaf of `ca` for `host`.
async function verify(ca: CertificateAuthority, host: string, dir: string): Promise<string> {
  const caFile = join(dir, "verify-ca.pem");
  const leafFile = join(dir, "verify-leaf.pem");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(leafFile, await ca.leafPem(host));
  const r = spawnSync("openssl", ["verify", "-CAfile", caFile, "-purpose", "sslserver", leafFile], { encoding: "utf8" });
  return `${r.stdout}${r.stderr}`;
}

test("intercept rules that name hosts literally become the CA's permitted names; others leave it unconstrained", () => {
  assert.deepEqual(permittedNames(["^registry\\.example\\.com:443$", "^10\\.0\\.0\\.5:5000$", "^\\[::1\\]:8443$", "^Registry\\.Example\\.com(:\\d+)?$"]), [
    { type: "dns", value: "registry.example.com" },
    { type: "ip", value: "10.0.0.5" },
    { type: "ip", value: "::1" },
  ]);
  for (const rules of [[], ["^.*\\.example\\.com:443$"], ["registry\\.example\\.com:443"], ["^registry\\.example\\.com:443$", "^(a|b)\\.example:443$"]]) {
    assert.equal(permittedNames(rules), undefined, JSON.stringify(rules));
  }
});

test("a constrained CA: pathLen 0, a year, and leaves only for the permitted hosts", async (t) => {
  const f = files(t);
  const permitted = permittedNames(["^registry\\.example\\.com:443$", "^10\\.0\\.0\\.5:5000$"]);
  const ca = await CertificateAuthority.loadOrCreate({ ...f, logger: log, managed: true, permitted });
  const text = extensions(ca.certPem);
  assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  assert.match(text, /Name Constraints: critical\s+Permitted:\s+DNS:registry\.example\.com\s+IP:10\.0\.0\.5\/255\.255\.255\.255/);
  const days = (Date.parse(new X509Certificate(ca.certPem).validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 364.9 && days <= 365, `valid ${days} days`);

  assert.match(await verify(ca, "registry.example.com:443", f.dir), /: OK/);
  assert.match(await verify(ca, "10.0.0.5", f.dir), /: OK/);
  for (const other of ["evil.example", "10.0.0.6"]) {
    assert.match(await verify(ca, other, f.dir), /name constraint|subtree violation/i, `a leaf for ${other} must not verify`);
  }
});

test("the daemon's CA is made anew when the hosts change or it nears its end; an operator's CA is kept", async (t) => {
  const f = files(t);
  const a = permittedNames(["^a\\.example:443$"]);
  const first = await CertificateAuthority.loadOrCreate({ ...f, logger: log, managed: true, permitted: a });
  const same = await CertificateAuthority.loadOrCreate({ ...f, logger: log, managed: true, permitted: a });
  assert.equal(same.certPem, first.certPem, "unchanged rules keep the CA");
  const moved = await CertificateAuthority.loadOrCreate({ ...f, logger: log, managed: true, permitted: permittedNames(["^b\\.example:443$"]) });
  assert.notEqual(moved.certPem, first.certPem, "new hosts make a new CA");
  assert.match(extensions(moved.certPem), /DNS:b\.example/);

  // Ten days left: the daemon's own CA is replaced, an operator's is not.
  const old = join(f.dir, "old");
  mkdirSync(old);
  const pair = { certFile: join(old, "ca.crt"), keyFile: join(old, "ca.key") };
  execFileSync("openssl", selfSignedArgs(pair.keyFile, pair.certFile, "/CN=old", 10, ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign"]), {
    stdio: "ignore",
  });
  const operators = await CertificateAuthority.loadOrCreate({ ...pair, logger: log });
  assert.match(new X509Certificate(operators.certPem).subject, /CN=old/);
  const renewed = await CertificateAuthority.loadOrCreate({ ...pair, logger: log, managed: true });
  assert.doesNotMatch(new X509Certificate(renewed.certPem).subject, /CN=old/);
  assert.ok(Date.parse(new X509Certificate(renewed.certPem).validTo) - Date.now() > 364 * 86_400_000);
});
