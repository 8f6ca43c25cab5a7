// The proxy CA: files it creates and reloads, leaves that real TLS clients and
// openssl accept, one issuance per host under concurrency, and the errors a
// broken or half-present CA, or a bad host name, produce. (The leaf cache's
// bound, 1000 issuances, is in test/integration/proxy-ca-cache.test.ts.)
import { test } from "node:test";
import { selfSignedArgs } from "../helpers/pki.js";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { CertificateAuthority } from "../../src/peer/proxy/ca.js";

const log = pino({ level: "silent" });

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-ca-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// A logger whose lines can be inspected.
function capturingLogger(): { logger: typeof log; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

function files(dir: string): { certFile: string; keyFile: string } {
  return { certFile: join(dir, "certs", "ca.crt"), keyFile: join(dir, "private", "ca.key") };
}

// Serves TLS the way the intercepting proxy will: the CONNECT target picks
// the default context (clients send no SNI for IP literals), SNI overrides it.
async function tlsServer(t: { after(fn: () => Promise<void>): void }, ca: CertificateAuthority, connectTarget: string): Promise<number> {
  const server = net.createServer((raw) => {
    void ca.secureContextFor(connectTarget).then((secureContext) => {
      const socket = new tls.TLSSocket(raw, {
        isServer: true,
        secureContext,
        SNICallback: (name, cb) =>
          void ca.secureContextFor(name).then(
            (ctx) => cb(null, ctx),
            (err: Error) => cb(err),
          ),
      });
      socket.on("error", () => socket.destroy());
      // A wrapped server socket sees the client's hang-up as "end" (once it
      // reads) but does not close by itself; server.close() would then wait
      // for it forever.
      socket.on("end", () => socket.destroy());
      socket.resume();
      socket.end("hello");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

function connect(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options, () => resolve(socket));
    socket.once("error", reject);
  });
}

test("a new CA is written with private modes and reloaded unchanged", async (t) => {
  const dir = tempDir(t);
  const paths = files(dir);
  const { logger, lines } = capturingLogger();
  const ca = await CertificateAuthority.loadOrCreate({ ...paths, logger });
  assert.equal(ca.certFile, paths.certFile);
  assert.equal(statSync(paths.keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(paths.certFile).mode & 0o777, 0o644);
  assert.equal(statSync(join(dir, "private")).mode & 0o777, 0o700);
  assert.deepEqual([...readdirSync(join(dir, "private")), ...readdirSync(join(dir, "certs"))].sort(), ["ca.crt", "ca.key"], "no temporary files left");
  assert.equal(readFileSync(paths.certFile, "utf8"), ca.certPem);

  const cert = new X509Certificate(ca.certPem);
  assert.equal(cert.ca, true);
  assert.match(cert.subject, /CN=Damselfly proxy CA /);
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 364.9 && days <= 365, `valid ${days} days`);
  const text = execFileSync("openssl", ["x509", "-noout", "-ext", "basicConstraints,keyUsage,subjectKeyIdentifier"], { input: ca.certPem }).toString();
  assert.match(text, /Basic Constraints: critical\s+CA:TRUE/);
  assert.match(text, /Certificate Sign, CRL Sign/);
  assert.match(text, /Subject Key Identifier/);

  const info = lines.map((l) => JSON.parse(l) as { level: number; msg: string; certFile?: string }).filter((l) => l.level === 30);
  assert.equal(info.length, 1);
  assert.equal(info[0]!.certFile, paths.certFile);
  assert.match(info[0]!.msg, /generated proxy CA/);
  const keyBody = readFileSync(paths.keyFile, "utf8").split("\n")[1]!;
  assert.ok(!lines.join("").includes(keyBody), "key material is never logged");

  const again = await CertificateAuthority.loadOrCreate({ ...paths, logger: log });
  assert.equal(again.certPem, ca.certPem);
  // The reloaded key signs leaves the original certificate vouches for.
  const leaf = new X509Certificate(await again.leafPem("registry.example"));
  assert.ok(leaf.verify(cert.publicKey));
});

test("TLS clients trusting the CA accept its leaves for names and IPs; others refuse them", async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ ...files(tempDir(t)), logger: log });
  const port = await tlsServer(t, ca, "127.0.0.1:443");

  const byName = await connect({ host: "127.0.0.1", port, servername: "registry.example", ca: ca.certPem });
  assert.equal(byName.authorized, true);
  assert.equal(byName.authorizationError, null);
  assert.equal(byName.getPeerCertificate().subjectaltname, "DNS:registry.example");
  byName.destroy();

  const byIp = await connect({ host: "127.0.0.1", port, ca: ca.certPem });
  assert.equal(byIp.authorized, true);
  assert.equal(byIp.getPeerCertificate().subjectaltname, "IP Address:127.0.0.1");
  byIp.destroy();

  await assert.rejects(connect({ host: "127.0.0.1", port, servername: "registry.example" }), (err: NodeJS.ErrnoException) => {
    assert.match(err.code ?? "", /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    return true;
  });
  // Trusting the CA does not make a leaf valid for another name.
  await assert.rejects(
    connect({
      host: "127.0.0.1",
      port,
      servername: "registry.example",
      ca: ca.certPem,
      checkServerIdentity: (_h, cert) => tls.checkServerIdentity("other.example", cert),
    }),
    {
      code: "ERR_TLS_CERT_ALTNAME_INVALID",
    },
  );
});

test("openssl accepts the leaves as server certificates for their host", async (t) => {
  const dir = tempDir(t);
  const paths = files(dir);
  const ca = await CertificateAuthority.loadOrCreate({ ...paths, logger: log });
  const verify = async (host: string, check: string[]): Promise<string> => {
    const leafFile = join(dir, "leaf.pem");
    writeFileSync(leafFile, await ca.leafPem(host));
    return execFileSync("openssl", ["verify", "-CAfile", paths.certFile, "-purpose", "sslserver", ...check, leafFile]).toString();
  };
  assert.match(await verify("registry.example", ["-verify_hostname", "registry.example"]), /leaf\.pem: OK/);
  assert.match(await verify("10.1.2.3:5000", ["-verify_ip", "10.1.2.3"]), /leaf\.pem: OK/);
  assert.match(await verify("[2001:db8::1]:443", ["-verify_ip", "2001:db8::1"]), /leaf\.pem: OK/);

  const text = execFileSync("openssl", ["x509", "-noout", "-text"], { input: await ca.leafPem("registry.example") }).toString();
  assert.match(text, /TLS Web Server Authentication/);
  assert.match(text, /Digital Signature/);
  assert.match(text, /Authority Key Identifier/);
  assert.match(text, /Serial Number:\s*\n?\s*([0-9a-f]{2}:){15}[0-9a-f]{2}/);
  const leaf = new X509Certificate(await ca.leafPem("registry.example"));
  const hours = (Date.now() - Date.parse(leaf.validFrom)) / 3_600_000;
  assert.ok(hours > 0.99 && hours < 1.01, `backdated ${hours} h`);
  // 397 days at most, and never past the CA's own end (a year).
  assert.equal(leaf.validTo, new X509Certificate(ca.certPem).validTo);
});

test("a CA made elsewhere (RSA, by openssl) is loaded and signs leaves", async (t) => {
  const dir = tempDir(t);
  const paths = { certFile: join(dir, "rsa.crt"), keyFile: join(dir, "rsa.key") };
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", paths.keyFile, "-out", paths.certFile, "-subj", "/O=Example/CN=Example RSA CA", "-days", "30"],
    { stdio: "ignore" },
  );
  const ca = await CertificateAuthority.loadOrCreate({ ...paths, logger: log });
  const leafFile = join(dir, "leaf.pem");
  writeFileSync(leafFile, await ca.leafPem("registry.example"));
  const out = execFileSync("openssl", [
    "verify",
    "-CAfile",
    paths.certFile,
    "-purpose",
    "sslserver",
    "-verify_hostname",
    "registry.example",
    leafFile,
  ]).toString();
  assert.match(out, /OK/);
  // A leaf never outlives the CA that vouches for it.
  assert.ok(Date.parse(new X509Certificate(readFileSync(leafFile)).validTo) <= Date.parse(new X509Certificate(ca.certPem).validTo));
});

test("concurrent requests for one host share one issuance; spellings of a host share a cache entry", async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ ...files(tempDir(t)), logger: log });
  const contexts = await Promise.all(Array.from({ length: 20 }, (_, i) => ca.secureContextFor(i % 2 === 0 ? "Registry.Example" : "registry.example:443")));
  assert.ok(contexts.every((c) => c === contexts[0]));
  const pems = await Promise.all([ca.leafPem("registry.example."), ca.leafPem("registry.example")]);
  assert.equal(pems[0], pems[1]);
  assert.equal(await ca.secureContextFor("::1"), await ca.secureContextFor("[0:0::1]:8443"));
  assert.notEqual(await ca.leafPem("a.example"), await ca.leafPem("b.example"));
  assert.ok(new X509Certificate(await ca.leafPem("[::1]")).checkIP("::1"));
  assert.ok(new X509Certificate(await ca.leafPem("bücher.example")).checkHost("xn--bcher-kva.example"));
});

test("a broken or half-present CA is a configuration error that names the file", async (t) => {
  const dir = tempDir(t);
  const paths = files(dir);
  await CertificateAuthority.loadOrCreate({ ...paths, logger: log });
  const goodKey = readFileSync(paths.keyFile, "utf8");
  const goodCert = readFileSync(paths.certFile, "utf8");
  const load = () => CertificateAuthority.loadOrCreate({ ...paths, logger: log });

  writeFileSync(paths.keyFile, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
  await assert.rejects(load(), (err: Error & { code?: string }) => {
    assert.equal(err.code, "DF_ERR_CONFIG");
    assert.ok(err.message.includes(paths.keyFile), err.message);
    assert.ok(!err.message.includes("bm90IGEga2V5"), "key text stays out of the message");
    return true;
  });

  const other = files(join(dir, "other"));
  await CertificateAuthority.loadOrCreate({ ...other, logger: log });
  writeFileSync(paths.keyFile, readFileSync(other.keyFile));
  await assert.rejects(load(), { code: "DF_ERR_CONFIG", message: /does not belong/ });

  writeFileSync(paths.keyFile, goodKey);
  writeFileSync(paths.certFile, "garbage");
  await assert.rejects(load(), { code: "DF_ERR_CONFIG", message: /exactly one PEM certificate/ });

  const notCa = join(dir, "not-ca");
  execFileSync("openssl", selfSignedArgs(`${notCa}.key`, `${notCa}.crt`, "/CN=not a CA", 30, ["basicConstraints=critical,CA:FALSE"]), { stdio: "ignore" });
  await assert.rejects(CertificateAuthority.loadOrCreate({ certFile: `${notCa}.crt`, keyFile: `${notCa}.key`, logger: log }), {
    code: "DF_ERR_CONFIG",
    message: /not a CA certificate/,
  });

  writeFileSync(paths.certFile, goodCert);
  rmSync(paths.keyFile);
  await assert.rejects(load(), (err: Error & { code?: string }) => {
    assert.equal(err.code, "DF_ERR_CONFIG");
    assert.ok(err.message.includes(`${paths.certFile} exists but ${paths.keyFile} does not`), err.message);
    return true;
  });
  writeFileSync(paths.keyFile, goodKey);
  rmSync(paths.certFile);
  await assert.rejects(load(), { code: "DF_ERR_CONFIG", message: /ca\.key exists but .*ca\.crt does not/ });
});

test("host names that are neither DNS names nor IP literals are refused", async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ ...files(tempDir(t)), logger: log });
  const bad = [
    "",
    "bad host",
    "a..b",
    "-x.example",
    "x-.example",
    "*.example",
    "[::1",
    "[::1]x",
    "[1.2.3.4]",
    "host:port",
    "host:",
    "999.1.1.1",
    "10.0.0",
    "0x7f.1",
    `${"a".repeat(64)}.example`,
    `${"a.".repeat(127)}a`,
    "a/b",
    "user@host",
  ];
  for (const host of bad) {
    await assert.rejects(ca.secureContextFor(host), { code: "DF_ERR_INVALID_REQUEST" }, JSON.stringify(host));
  }
});

test("leaf issuance time, first and cached", async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ ...files(tempDir(t)), logger: log });
  const time = async (host: string): Promise<number> => {
    const start = process.hrtime.bigint();
    await ca.secureContextFor(host);
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const firstEver = await time("warmup.example");
  const fresh: number[] = [];
  for (let i = 0; i < 50; i++) fresh.push(await time(`fresh${i}.example`));
  const cached: number[] = [];
  for (let i = 0; i < 50; i++) cached.push(await time(`fresh${i}.example`));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  // Figures only: what a cached host costs is checked by identity (the same
  // context), never by the clock.
  t.diagnostic(
    `first leaf (incl. leaf key) ${firstEver.toFixed(2)} ms; new host median ${median(fresh).toFixed(2)} ms; cached median ${median(cached).toFixed(4)} ms`,
  );
  assert.equal(await ca.secureContextFor("fresh0.example"), await ca.secureContextFor("fresh0.example"));
});
