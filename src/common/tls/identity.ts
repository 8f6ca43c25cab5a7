import { EventEmitter } from "node:events";
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import tls from "node:tls";
import { DamselflyError } from "../errors.js";
import type { Logger } from "../logger.js";
import { identityOfCert, type PeerIdentity, type Role } from "./roles.js";

export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

// One generation of a component's TLS material. A download that signs with
// it keeps its own reference, so a rotation mid-task never mixes keys.
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly context: tls.SecureContext;
  readonly caCert: X509Certificate;
  readonly leaf: X509Certificate;
  readonly privateKey: KeyObject;
  readonly identity: PeerIdentity;
}

export interface ClientTlsOptions {
  // Roles the server's certificate may have; anything else is refused.
  readonly roles: readonly Role[];
  // Check the host name we dialled against the certificate (for configured
  // scheduler and manager addresses). Peers found through the scheduler are
  // checked by role only: their certificates need not name their addresses.
  readonly verifyHostname?: boolean;
}

// Only TLS 1.3: no legacy cipher negotiation to get wrong.
const MIN_VERSION = "TLSv1.3";
const DEFAULT_POLL_MS = 1_000;

function loadMaterial(files: TlsFiles): TlsMaterial {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new DamselflyError("DF_ERR_CONFIG", `cannot read the TLS ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const ca = read("CA certificate", files.ca);
  const cert = read("certificate", files.cert);
  const key = read("key", files.key);
  let caCert: X509Certificate;
  let leaf: X509Certificate;
  let privateKey: KeyObject;
  let context: tls.SecureContext;
  try {
    caCert = new X509Certificate(ca);
    leaf = new X509Certificate(cert);
    privateKey = createPrivateKey(key);
    context = tls.createSecureContext({ ca, cert, key, minVersion: MIN_VERSION });
  } catch (err) {
    throw new DamselflyError("DF_ERR_CONFIG", `TLS files ${files.cert} / ${files.key} / ${files.ca}: ${(err as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new DamselflyError("DF_ERR_CONFIG", `${files.key} is not the key of ${files.cert}`);
  if (!leaf.checkIssued(caCert) || !leaf.verify(caCert.publicKey)) {
    throw new DamselflyError("DF_ERR_CONFIG", `${files.cert} is not issued by the CA in ${files.ca}`);
  }
  const identity = identityOfCert(leaf);
  if (!identity) {
    throw new DamselflyError("DF_ERR_CONFIG", `${files.cert} names no Damselfly role (a URI SAN spiffe://damselfly/ROLE/NAME; see damselfly certs issue)`);
  }
  return { ca, cert, key, context, caCert, leaf, privateKey, identity };
}

// A component's certificate, key and cluster CA, from files. The files are
// polled: when cert-manager (or an operator) replaces them, new connections
// use the new certificate without a restart; a half-written set (key and
// certificate not matching yet) is ignored until the next poll.
export class TlsIdentity extends EventEmitter<{ reload: [TlsMaterial] }> {
  private material: TlsMaterial;
  private readonly verified = new Map<string, PeerIdentity>();
  private watching = false;
  private readonly onChange = () => this.reload();

  private constructor(
    readonly files: TlsFiles,
    private readonly logger?: Logger,
  ) {
    super();
    this.material = loadMaterial(files);
  }

  static load(files: TlsFiles, opts: { logger?: Logger; pollMs?: number; watch?: boolean } = {}): TlsIdentity {
    const id = new TlsIdentity(files, opts.logger);
    if (opts.watch !== false) id.watch(opts.pollMs ?? DEFAULT_POLL_MS);
    return id;
  }

  current(): TlsMaterial {
    return this.material;
  }

  get identity(): PeerIdentity {
    return this.material.identity;
  }

  // Reads the files again; keeps the current material if they do not load.
  reload(): boolean {
    let next: TlsMaterial;
    try {
      next = loadMaterial(this.files);
    } catch (err) {
      this.logger?.warn({ err: (err as Error).message }, "TLS files changed but do not load; keeping the current certificate");
      return false;
    }
    if (next.leaf.fingerprint256 === this.material.leaf.fingerprint256 && next.caCert.fingerprint256 === this.material.caCert.fingerprint256) return false;
    this.material = next;
    this.verified.clear();
    this.logger?.info({ role: next.identity.role, name: next.identity.name, notAfter: next.leaf.validTo }, "TLS certificate reloaded");
    this.emit("reload", next);
    return true;
  }

  private watch(pollMs: number): void {
    this.watching = true;
    for (const f of [this.files.ca, this.files.cert, this.files.key]) watchFile(f, { interval: pollMs, persistent: false }, this.onChange);
  }

  close(): void {
    if (!this.watching) return;
    this.watching = false;
    for (const f of [this.files.ca, this.files.cert, this.files.key]) unwatchFile(f, this.onChange);
  }

  // Options of a server that accepts only clients with a certificate of our
  // CA. `attach` keeps a server's context current across rotations.
  serverOptions(requireClientCert = true): tls.TlsOptions {
    const m = this.material;
    return { ca: m.ca, cert: m.cert, key: m.key, requestCert: true, rejectUnauthorized: requireClientCert, minVersion: MIN_VERSION };
  }

  attach(server: tls.Server, requireClientCert = true): void {
    const update = () => server.setSecureContext(this.serverOptions(requireClientCert));
    this.on("reload", update);
    server.once("close", () => this.off("reload", update));
  }

  // Options for tls.connect / http2.connect / https.request: our certificate
  // as the client's, our CA only (no system roots), and the server's role
  // checked against `opts.roles`. The context is read when a connection is
  // made (a getter), so options kept by a long-lived client pick up a
  // rotated certificate from the next connection on.
  clientOptions(opts: ClientTlsOptions): tls.ConnectionOptions {
    const self = this;
    return {
      get secureContext() {
        return self.material.context;
      },
      minVersion: MIN_VERSION,
      checkServerIdentity: (host, cert) => checkServer(host, cert, opts),
    };
  }

  // Verifies a certificate someone handed us (a grant's signer): issued by
  // our CA, currently or at `at` valid, with one of `roles`. Throws
  // DF_ERR_TRUST_INVALID otherwise.
  verifyCert(pem: string | Buffer, roles: readonly Role[], at = Date.now()): { identity: PeerIdentity; cert: X509Certificate } {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      throw new DamselflyError("DF_ERR_TRUST_INVALID", "not a certificate");
    }
    const ca = this.material.caCert;
    let identity = this.verified.get(cert.fingerprint256);
    if (!identity) {
      if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new DamselflyError("DF_ERR_TRUST_INVALID", "certificate not issued by the cluster CA");
      identity = identityOfCert(cert);
      if (!identity) throw new DamselflyError("DF_ERR_TRUST_INVALID", "certificate names no role");
      this.verified.set(cert.fingerprint256, identity);
    }
    if (!roles.includes(identity.role)) throw new DamselflyError("DF_ERR_TRUST_INVALID", `certificate of a ${identity.role}, not ${roles.join(" or ")}`);
    if (at < Date.parse(cert.validFrom) || at > Date.parse(cert.validTo))
      throw new DamselflyError("DF_ERR_TRUST_INVALID", "certificate not valid at that time");
    return { identity, cert };
  }
}

function checkServer(host: string, cert: tls.PeerCertificate, opts: ClientTlsOptions): Error | undefined {
  if (opts.verifyHostname) {
    const err = tls.checkServerIdentity(host, cert);
    if (err) return err;
  }
  const id = identityOfCert(cert);
  if (!id) return new Error("server certificate names no Damselfly role");
  if (!opts.roles.includes(id.role)) return new Error(`server is a ${id.role}, expected ${opts.roles.join(" or ")}`);
  return undefined;
}
