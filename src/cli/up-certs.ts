// The certificates of `damselfly up`: a cluster CA and one certificate per
// component in DATA/tls, made on the first start and kept on later ones (a
// browser that trusts the CA keeps trusting the console). A certificate that
// no longer fits (another CA, role or name, or near its end) is issued again.
import { X509Certificate } from "node:crypto";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { DamselflyError } from "../common/errors.js";
import { TlsIdentity, type TlsFiles } from "../common/tls/identity.js";
import { CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, createCa, issueCert, KEY_FILE } from "../common/tls/issue.js";
import type { Role } from "../common/tls/roles.js";

// Re-issue this long before a certificate ends (`up` runs are short; a
// certificate expiring mid-run would only confuse).
const RENEW_BEFORE_MS = 30 * 24 * 3_600_000;

export interface UpCertificates {
  // DATA/tls: the CA in ca/, each component in its own directory.
  dir: string;
  caFile: string;
  scheduler: TlsFiles;
  manager: TlsFiles;
  seed: TlsFiles;
  peer: TlsFiles;
  // For `get --tls-*` against a daemon API on TCP, and the like.
  client: TlsFiles;
}

export interface UpNames {
  // The daemons' host names: a peer's certificate must name its host.
  seed: string;
  peer: string;
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function ensureCa(caDir: string): Promise<string> {
  const cert = join(caDir, CA_CERT_FILE);
  const [hasCert, hasKey] = await Promise.all([exists(cert), exists(join(caDir, CA_KEY_FILE))]);
  if (hasCert && hasKey) return cert;
  if (hasCert || hasKey) {
    throw new DamselflyError("DF_ERR_CONFIG", `${caDir} holds only one of ${CA_CERT_FILE} and ${CA_KEY_FILE}: remove ${caDir} to make a new CA`);
  }
  return (await createCa(caDir, { name: "Damselfly up CA" })).certFile;
}

// Whether the files in `out` hold a usable certificate of `role`/`name`
// issued by the CA in `caFile`.
function fits(files: TlsFiles, caFingerprint: string, role: Role, name: string): boolean {
  try {
    const m = TlsIdentity.load(files, { watch: false }).current();
    return (
      m.caCert.fingerprint256 === caFingerprint &&
      m.identity.role === role &&
      m.identity.name === name &&
      Date.parse(m.leaf.validTo) - Date.now() > RENEW_BEFORE_MS
    );
  } catch {
    return false;
  }
}

async function ensureCert(caDir: string, caFingerprint: string, out: string, role: Role, name: string): Promise<TlsFiles> {
  const files = { ca: join(out, CA_CERT_FILE), cert: join(out, CERT_FILE), key: join(out, KEY_FILE) };
  if (fits(files, caFingerprint, role, name)) return files;
  // Everything in `up` is on loopback: the address and name it is dialled at.
  await issueCert({ caDir, role, name, ips: ["127.0.0.1"], dns: ["localhost"], out });
  return files;
}

export async function ensureUpCertificates(base: string, names: UpNames): Promise<UpCertificates> {
  const dir = join(base, "tls");
  const caDir = join(dir, "ca");
  const caFile = await ensureCa(caDir);
  const caFingerprint = new X509Certificate(await readFile(caFile)).fingerprint256;
  const cert = (sub: string, role: Role, name: string) => ensureCert(caDir, caFingerprint, join(dir, sub), role, name);
  return {
    dir,
    caFile,
    scheduler: await cert("scheduler", "scheduler", "scheduler"),
    manager: await cert("manager", "manager", "manager"),
    seed: await cert("seed", "seed-peer", names.seed),
    peer: await cert("peer", "peer", names.peer),
    client: await cert("client", "client", "up-client"),
  };
}
