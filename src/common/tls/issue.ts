// The cluster CA and component certificates, as `damselfly certs` and
// `damselfly up` make them. Any CA works (cert-manager's CA issuer, an
// enterprise PKI): a component certificate needs only a URI SAN
// spiffe://damselfly/ROLE/NAME (roles.ts), clientAuth and serverAuth.
//
// @peculiar/x509 needs a Reflect metadata polyfill loaded before it.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { randomBytes, webcrypto } from "node:crypto";
import { access, chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { DamselflyError } from "../errors.js";
import { roleUri, type Role } from "./roles.js";

x509.cryptoProvider.set(webcrypto);

const DAY = 24 * 3_600_000;
const CA_VALIDITY_DAYS = 10 * 365;
export const DEFAULT_CERT_DAYS = 365;
// Peers whose clocks lag the issuer's would otherwise see a not-yet-valid certificate.
const BACKDATE = 3_600_000;
const EC_P256: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: webcrypto.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const DNS_NAME = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*$/;

export const CA_CERT_FILE = "ca.crt";
export const CA_KEY_FILE = "ca.key";
export const CERT_FILE = "tls.crt";
export const KEY_FILE = "tls.key";

function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString("hex");
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

// Written whole or not at all: a reader never sees half a key.
async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

// DIR/ca.crt and DIR/ca.key (0600). Refuses to overwrite an existing CA:
// every certificate issued by it would stop being trusted.
export async function createCa(dir: string, opts: { name?: string } = {}): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, CA_CERT_FILE);
  const keyFile = join(dir, CA_KEY_FILE);
  if ((await exists(certFile)) || (await exists(keyFile))) {
    throw new DamselflyError("DF_ERR_USAGE", `${dir} already holds a CA (${CA_CERT_FILE}/${CA_KEY_FILE}); remove it first or choose another --out`);
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ O: ["Damselfly"] }, { CN: [opts.name ?? "Damselfly cluster CA"] }],
    notBefore: new Date(now - BACKDATE),
    notAfter: new Date(now + CA_VALIDITY_DAYS * DAY),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  await writeAtomic(keyFile, await pkcs8Pem(keys.privateKey), 0o600);
  await writeAtomic(certFile, cert.toString("pem") + "\n", 0o644);
  return { certFile, keyFile };
}

export interface IssueOptions {
  readonly caDir: string;
  readonly role: Role;
  readonly name: string;
  readonly ips?: readonly string[];
  readonly dns?: readonly string[];
  readonly out: string;
  readonly days?: number;
}

// OUT/tls.crt, OUT/tls.key (0600) and OUT/ca.crt: the layout of a
// cert-manager Secret, so a component reads either the same way.
export async function issueCert(o: IssueOptions): Promise<{ certFile: string; keyFile: string; caFile: string }> {
  for (const ip of o.ips ?? []) if (isIP(ip) === 0) throw new DamselflyError("DF_ERR_USAGE", `--ip ${ip} is not an IP address`);
  for (const d of o.dns ?? []) if (!DNS_NAME.test(d)) throw new DamselflyError("DF_ERR_USAGE", `--dns ${d} is not a DNS name`);
  if (o.name === "" || o.name.length > 128 || /[\s/]/.test(o.name))
    throw new DamselflyError("DF_ERR_USAGE", "--name must be 1-128 characters, no spaces or '/'");
  const days = o.days ?? DEFAULT_CERT_DAYS;
  if (!(days > 0 && days <= CA_VALIDITY_DAYS)) throw new DamselflyError("DF_ERR_USAGE", `--days must be 1..${CA_VALIDITY_DAYS}`);
  let caPem: string;
  let caKeyPem: string;
  try {
    caPem = await readFile(join(o.caDir, CA_CERT_FILE), "utf8");
    caKeyPem = await readFile(join(o.caDir, CA_KEY_FILE), "utf8");
  } catch (err) {
    throw new DamselflyError("DF_ERR_USAGE", `cannot read the CA in ${o.caDir}: ${(err as Error).message} (make one with damselfly certs init)`);
  }
  const ca = new x509.X509Certificate(caPem);
  const caKey = await webcrypto.subtle.importKey("pkcs8", x509.PemConverter.decode(caKeyPem)[0]!, EC_P256, false, ["sign"]);
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const names: x509.JsonGeneralName[] = [{ type: "url", value: roleUri(o.role, o.name) }];
  const dns = new Set(o.dns ?? []);
  // A host-like name is also a DNS name, so the usual hostname check passes.
  if (DNS_NAME.test(o.name) && isIP(o.name) === 0) dns.add(o.name);
  for (const d of dns) names.push({ type: "dns", value: d });
  for (const ip of o.ips ?? []) names.push({ type: "ip", value: ip });
  const now = Date.now();
  const notAfter = Math.min(now + days * DAY, ca.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ O: ["Damselfly"] }, { OU: [o.role] }, { CN: [o.name.slice(0, 64)] }],
    issuer: ca.subjectName,
    notBefore: new Date(now - BACKDATE),
    notAfter: new Date(notAfter),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  await mkdir(o.out, { recursive: true, mode: 0o700 });
  const certFile = join(o.out, CERT_FILE);
  const keyFile = join(o.out, KEY_FILE);
  const caFile = join(o.out, CA_CERT_FILE);
  // Key first: a watcher that sees the new certificate finds its key.
  await writeAtomic(keyFile, await pkcs8Pem(keys.privateKey), 0o600);
  await writeAtomic(certFile, cert.toString("pem") + "\n", 0o644);
  await writeAtomic(caFile, caPem, 0o644);
  return { certFile, keyFile, caFile };
}
