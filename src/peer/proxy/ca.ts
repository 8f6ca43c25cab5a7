// The certificate authority behind the HTTPS-intercepting proxy: it mints a
// leaf certificate for whatever host a client CONNECTs to, so clients that
// trust this one CA certificate accept the proxy in place of the registry.
//
// @peculiar/x509 resolves its algorithms through tsyringe, which throws at load
// time unless a Reflect metadata polyfill is installed first; ES modules
// evaluate imports in order, so this import must stay above the x509 one.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { X509Certificate as NodeX509Certificate, createPrivateKey, randomBytes, webcrypto, type KeyObject } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import tls from "node:tls";
import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { parseHost, type LeafName } from "./leaf-name.js";
import { nameConstraintsExtension, sameConstraints } from "./ca-constraints.js";

x509.cryptoProvider.set(webcrypto);

type CryptoKey = webcrypto.CryptoKey;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// A year: a root that clients trust should not outlive the machine's use of
// it by much. A generated CA is made anew at start once it is this close to
// its end (clients must then trust the new one; the log says so).
const CA_VALIDITY = 365 * DAY;
const CA_RENEW_BEFORE = 30 * DAY;
// 397 days is the longest lifetime Apple and Chrome accept for a server leaf,
// even from a locally trusted root.
const LEAF_VALIDITY = 397 * DAY;
// Clients whose clock lags the daemon's would otherwise see a not-yet-valid leaf.
const LEAF_BACKDATE = HOUR;
// A long-running daemon re-issues a leaf this long before it would expire.
const LEAF_RENEW_MARGIN = 7 * DAY;
const MAX_CACHED_LEAVES = 1000;
// X.520 upper bound on a common name; longer names go only into the SAN.
const MAX_COMMON_NAME = 64;

const EC_P256: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };

interface Leaf {
  readonly context: tls.SecureContext;
  readonly certPem: string;
  readonly renewAt: number;
}

interface LeafKey {
  readonly spki: ArrayBuffer;
  readonly pem: string;
}

interface CacheSlot {
  readonly leaf: Promise<Leaf>;
  // Infinity while the leaf is being issued: the in-flight promise is shared.
  renewAt: number;
}

interface Signer {
  readonly key: CryptoKey;
  readonly algorithm: webcrypto.EcdsaParams | webcrypto.Algorithm;
}

export class CertificateAuthority {
  private readonly leaves = new Map<string, CacheSlot>();
  private leafKey: Promise<LeafKey> | undefined;

  private constructor(
    readonly certFile: string,
    readonly certPem: string,
    private readonly cert: x509.X509Certificate,
    private readonly signer: Signer,
    private readonly authorityKeyId: string,
  ) {}

  // `managed`: the CA is the daemon's own (generated at the default path),
  // which it replaces when it nears its end or when `permitted` (the names
  // it may certify, from the intercept rules: ca-constraints.ts) changed. An
  // operator's CA is loaded as it is.
  static async loadOrCreate(o: {
    certFile: string;
    keyFile: string;
    logger: Logger;
    managed?: boolean;
    permitted?: readonly LeafName[] | undefined;
  }): Promise<CertificateAuthority> {
    const [certPem, keyPem] = await Promise.all([readIfExists(o.certFile, "certificate"), readIfExists(o.keyFile, "private key")]);
    const stale = o.managed && certPem !== undefined && keyPem !== undefined ? staleness(certPem, o.permitted) : undefined;
    if (certPem !== undefined && keyPem !== undefined && stale === undefined) {
      const ca = await CertificateAuthority.load(o.certFile, certPem, o.keyFile, keyPem);
      o.logger.debug({ certFile: o.certFile, subject: ca.cert.subject, notAfter: ca.cert.notAfter.toISOString() }, "loaded proxy CA");
      return ca;
    }
    if (stale === undefined && (certPem !== undefined || keyPem !== undefined)) {
      const [present, missing] = certPem !== undefined ? [o.certFile, o.keyFile] : [o.keyFile, o.certFile];
      throw new DamselflyError(
        "DF_ERR_CONFIG",
        `proxy CA: ${present} exists but ${missing} does not; restore the missing file, or remove ${present} to generate a new CA (clients must then trust the new certificate)`,
      );
    }
    const ca = await CertificateAuthority.generate(o.certFile, o.keyFile, o.permitted);
    const fields = { certFile: o.certFile, notAfter: ca.cert.notAfter.toISOString(), constrained: o.permitted !== undefined };
    if (stale) o.logger.warn({ ...fields, reason: stale }, "generated a new proxy CA; clients that go through the HTTPS proxy must trust the new certificate");
    else o.logger.info(fields, "generated proxy CA; trust this certificate in clients that go through the HTTPS proxy");
    return ca;
  }

  // A TLS context presenting a leaf for `host` ("name", "name:port", an IP
  // literal, "[v6]:port"). One issuance per host at a time; results are cached.
  async secureContextFor(host: string): Promise<tls.SecureContext> {
    return (await this.leafFor(host)).context;
  }

  // The PEM leaf certificate secureContextFor(host) presents.
  async leafPem(host: string): Promise<string> {
    return (await this.leafFor(host)).certPem;
  }

  private leafFor(host: string): Promise<Leaf> {
    let name: LeafName;
    try {
      name = parseHost(host);
    } catch (err) {
      return Promise.reject(err);
    }
    const key = `${name.type}:${name.value}`;
    const cached = this.leaves.get(key);
    // Re-inserting moves the entry to the end: Map order is the LRU order.
    this.leaves.delete(key);
    if (cached !== undefined && cached.renewAt > Date.now()) {
      this.leaves.set(key, cached);
      return cached.leaf;
    }
    const slot: CacheSlot = { leaf: this.issue(name), renewAt: Infinity };
    this.leaves.set(key, slot);
    if (this.leaves.size > MAX_CACHED_LEAVES) this.leaves.delete(this.leaves.keys().next().value as string);
    slot.leaf.then(
      (leaf) => {
        slot.renewAt = leaf.renewAt;
      },
      () => {
        // A failure is not cached: the next request tries again.
        if (this.leaves.get(key) === slot) this.leaves.delete(key);
      },
    );
    return slot.leaf;
  }

  private async issue(name: LeafName): Promise<Leaf> {
    const { spki, pem: keyPem } = await this.leafKeyPair();
    const now = Date.now();
    // A leaf outliving its issuer would be rejected by some clients anyway.
    const notAfter = Math.min(now + LEAF_VALIDITY, this.cert.notAfter.getTime());
    const subject: x509.JsonName = [{ O: ["Damselfly proxy"] }];
    // Only a DNS name goes in the CN as well (for old clients): name
    // constraints check a CN as a DNS name, which an IP address is not.
    if (name.type === "dns" && name.value.length <= MAX_COMMON_NAME) subject.push({ CN: [name.value] });
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject,
      issuer: this.cert.subjectName,
      notBefore: new Date(now - LEAF_BACKDATE),
      notAfter: new Date(notAfter),
      publicKey: spki,
      signingKey: this.signer.key,
      signingAlgorithm: this.signer.algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: name.type, value: name.value }]),
        new x509.AuthorityKeyIdentifierExtension(this.authorityKeyId),
      ],
    });
    const certPem = cert.toString("pem");
    return {
      context: tls.createSecureContext({ key: keyPem, cert: `${certPem}\n${this.certPem}` }),
      certPem,
      renewAt: Math.max(notAfter - LEAF_RENEW_MARGIN, now + HOUR),
    };
  }

  // One key serves every leaf: it never leaves this process, so a key per host
  // would add work and nothing else.
  private leafKeyPair(): Promise<LeafKey> {
    if (this.leafKey === undefined) {
      const pending = (async () => {
        const keys = await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
        const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
        // Encoded once here, the generator need not export and re-parse it per leaf.
        const spki = await webcrypto.subtle.exportKey("spki", keys.publicKey);
        return { spki, pem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") };
      })();
      pending.catch(() => {
        if (this.leafKey === pending) this.leafKey = undefined;
      });
      this.leafKey = pending;
    }
    return this.leafKey;
  }

  private static async load(certFile: string, certPem: string, keyFile: string, keyPem: string): Promise<CertificateAuthority> {
    const bad = (why: string, cause?: unknown): DamselflyError => new DamselflyError("DF_ERR_CONFIG", `proxy CA: ${why}`, cause === undefined ? {} : { cause });
    const blocks = certPem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
    if (blocks !== 1) throw bad(`${certFile} must hold exactly one PEM certificate, found ${blocks}`);
    let nodeCert: NodeX509Certificate;
    let cert: x509.X509Certificate;
    try {
      nodeCert = new NodeX509Certificate(certPem);
      cert = new x509.X509Certificate(certPem);
    } catch (err) {
      throw bad(`${certFile} is not a valid PEM certificate: ${(err as Error).message}`, err);
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(keyPem);
    } catch (err) {
      // The key's own text must not reach the message: only the parser's verdict.
      throw bad(`${keyFile} is not a valid unencrypted PEM private key: ${(err as Error).message}`, err);
    }
    if (!nodeCert.checkPrivateKey(privateKey)) throw bad(`the private key in ${keyFile} does not belong to the certificate in ${certFile}`);
    if (!nodeCert.ca) throw bad(`${certFile} is not a CA certificate (basicConstraints cA is not true)`);
    const keyUsage = cert.getExtension(x509.KeyUsagesExtension);
    if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
      throw bad(`${certFile} may not sign certificates (keyUsage lacks keyCertSign)`);
    }
    if (cert.notAfter.getTime() <= Date.now()) {
      throw bad(`${certFile} expired at ${cert.notAfter.toISOString()}; remove both files to generate a new CA`);
    }
    const signer = await importSigner(privateKey, keyFile, bad);
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const authorityKeyId = ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey)).keyId;
    return new CertificateAuthority(certFile, certPem, cert, signer, authorityKeyId);
  }

  private static async generate(certFile: string, keyFile: string, permitted: readonly LeafName[] | undefined): Promise<CertificateAuthority> {
    const keys = await webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
    const now = Date.now();
    const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: [{ O: ["Damselfly"] }, { CN: [`Damselfly proxy CA ${hostname()}`.slice(0, MAX_COMMON_NAME)] }],
      notBefore: new Date(now - LEAF_BACKDATE),
      notAfter: new Date(now + CA_VALIDITY),
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        ski,
        ...(permitted ? [nameConstraintsExtension(permitted)] : []),
      ],
    });
    const certPem = cert.toString("pem");
    const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
    try {
      await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
      await mkdir(dirname(certFile), { recursive: true, mode: 0o755 });
      // Key first: a crash between the two leaves a key without a certificate,
      // which loadOrCreate reports instead of silently minting a second CA.
      await writeAtomic(keyFile, keyPem, 0o600);
      await writeAtomic(certFile, certPem, 0o644);
    } catch (err) {
      // The system error keeps its code (a full disk is not a config mistake);
      // the message gains which files were being created.
      const mapped = DamselflyError.from(err, "DF_ERR_CONFIG");
      throw new DamselflyError(mapped.code, `proxy CA: cannot create ${certFile} and ${keyFile}: ${mapped.message}`, { cause: err });
    }
    return new CertificateAuthority(certFile, certPem, cert, { key: keys.privateKey, algorithm: { name: "ECDSA", hash: "SHA-256" } }, ski.keyId);
  }
}

// Why the daemon's own CA must be made anew, or undefined.
function staleness(certPem: string, permitted: readonly LeafName[] | undefined): string | undefined {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch {
    return undefined; // load() says what is wrong with it
  }
  if (cert.notAfter.getTime() - Date.now() < CA_RENEW_BEFORE) return `it expires at ${cert.notAfter.toISOString()}`;
  if (!sameConstraints(cert, permitted)) return "the intercepted hosts it may certify changed";
  return undefined;
}

async function readIfExists(file: string, what: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new DamselflyError("DF_ERR_CONFIG", `proxy CA: cannot read ${what} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

// WebCrypto signs; node:crypto parsed the key because it reads every PEM
// flavour (PKCS#8, SEC1, PKCS#1) and reports the key type and curve.
async function importSigner(key: KeyObject, keyFile: string, bad: (why: string) => DamselflyError): Promise<Signer> {
  const pkcs8 = key.export({ type: "pkcs8", format: "der" });
  if (key.asymmetricKeyType === "ec") {
    const curve = { prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" }[key.asymmetricKeyDetails?.namedCurve ?? ""];
    if (curve === undefined) throw bad(`${keyFile}: unsupported EC curve ${key.asymmetricKeyDetails?.namedCurve}`);
    const hash = { "P-256": "SHA-256", "P-384": "SHA-384", "P-521": "SHA-512" }[curve];
    const imported = await webcrypto.subtle.importKey("pkcs8", pkcs8, { name: "ECDSA", namedCurve: curve }, false, ["sign"]);
    return { key: imported, algorithm: { name: "ECDSA", hash } };
  }
  if (key.asymmetricKeyType === "rsa") {
    const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return { key: await webcrypto.subtle.importKey("pkcs8", pkcs8, algorithm, false, ["sign"]), algorithm };
  }
  throw bad(`${keyFile}: unsupported key type ${key.asymmetricKeyType}; use an ECDSA (P-256/384/521) or RSA key`);
}

// Written under a temporary name and renamed so a crash never leaves half a
// PEM file behind; the mode is set explicitly because the umask may differ.
async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

// 16 random bytes with the top bit clear: positive and unpredictable, as
// CA/Browser Forum rules ask, and never longer than the 20-octet limit.
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toString("hex");
}
