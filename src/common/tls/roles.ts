import type { PeerCertificate, TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";

// A component's role and name are bound into its certificate as one URI
// subject alternative name, SPIFFE-style: spiffe://damselfly/ROLE/NAME.
// cert-manager writes it from a Certificate's `uris:`; `damselfly certs
// issue` writes it too. The CA vouches for it, so a server decides what a
// caller may do from this name alone, never from what the caller says about
// itself (docs/decisions/zero-trust.md).
export const ROLES = ["scheduler", "seed-peer", "peer", "manager", "client"] as const;
export type Role = (typeof ROLES)[number];

export const ROLE_URI_PREFIX = "spiffe://damselfly/";

export interface PeerIdentity {
  readonly role: Role;
  // The component's name (a host name for peers and seed peers).
  readonly name: string;
  // SHA-256 fingerprint of the certificate (colon-separated hex, as node prints it).
  readonly fingerprint: string;
}

export function isRole(v: string): v is Role {
  return (ROLES as readonly string[]).includes(v);
}

export function roleUri(role: Role, name: string): string {
  return `${ROLE_URI_PREFIX}${role}/${encodeURIComponent(name)}`;
}

// The role URI among a subjectAltName string as node prints it
// ("DNS:a, IP Address:1.2.3.4, URI:spiffe://damselfly/peer/n1").
export function identityFromSan(san: string | undefined, fingerprint: string): PeerIdentity | undefined {
  if (!san) return undefined;
  let found: PeerIdentity | undefined;
  for (const part of san.split(", ")) {
    if (!part.startsWith("URI:" + ROLE_URI_PREFIX)) continue;
    const rest = part.slice(4 + ROLE_URI_PREFIX.length);
    const slash = rest.indexOf("/");
    if (slash <= 0) continue;
    const role = rest.slice(0, slash);
    let name: string;
    try {
      name = decodeURIComponent(rest.slice(slash + 1));
    } catch {
      continue;
    }
    if (!isRole(role) || name === "") continue;
    // Two role URIs in one certificate: ambiguous, so none.
    if (found) return undefined;
    found = { role, name, fingerprint };
  }
  return found;
}

export function identityOfCert(cert: PeerCertificate | X509Certificate): PeerIdentity | undefined {
  const san = "subjectaltname" in cert ? cert.subjectaltname : (cert as X509Certificate).subjectAltName;
  return identityFromSan(san, cert.fingerprint256);
}

// Identities by connection: a TLS 1.3 connection's peer certificate never
// changes, and reading it costs ~14 us (an object per call), which a
// scheduler would otherwise pay on every call of a long-lived session.
const byConnection = new WeakMap<object, PeerIdentity | null>();

// The verified identity of the far end of a TLS socket: undefined unless the
// handshake verified its certificate against our CA and it names a role.
export function identityOfSocket(socket: unknown): PeerIdentity | undefined {
  const s = socket as Partial<TLSSocket> | undefined;
  if (!s || s.encrypted !== true || s.authorized !== true || typeof s.getPeerCertificate !== "function") return undefined;
  const known = byConnection.get(s);
  if (known !== undefined) return known ?? undefined;
  const cert = s.getPeerCertificate();
  const id = cert && Object.keys(cert).length > 0 ? identityOfCert(cert) : undefined;
  byConnection.set(s, id ?? null);
  return id;
}
