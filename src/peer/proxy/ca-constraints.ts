// X.509 name constraints for the proxy CA: when every intercept rule names
// one host literally (`^registry\.example\.com:443$`, `^10\.0\.0\.5:5000$`),
// the CA may certify those hosts and nothing else, so its key, if stolen,
// cannot impersonate any other site to the machines that trust it. Rules
// that are real regular expressions match names no list can hold: the CA is
// then unconstrained (docs/operations/security.md, "Proxy CA").
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { isIPv4 } from "node:net";
import { parseHost, type LeafName } from "./leaf-name.js";

const NAME_CONSTRAINTS_OID = "2.5.29.30";
// What a literal host may contain once its escapes are undone.
const LITERAL_HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)$/;

// The hosts the intercept rules name, or undefined when one of them is not a
// literal `^host(:port)?$` (any port pattern).
export function permittedNames(rules: readonly string[]): LeafName[] | undefined {
  if (rules.length === 0) return undefined;
  const names = new Map<string, LeafName>();
  for (const rule of rules) {
    // "^host$", with a port pattern before the "$" (":443", ":\d+", "(:\d+)?").
    const body = /^\^(.+)\$$/.exec(rule)?.[1]?.replace(/(\(:[^()]*\)\?|:[^:\]]*)$/, "");
    const host = body?.replace(/\\([.\-[\]:])/g, "$1");
    if (host === undefined || !LITERAL_HOST.test(host)) return undefined;
    let name: LeafName;
    try {
      name = parseHost(host);
    } catch {
      return undefined;
    }
    names.set(`${name.type}:${name.value}`, name);
  }
  return [...names.values()];
}

// DER: tag, length, body.
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split(".").map(Number));
  // Canonical IPv6 from the leaf-name parser: expand "::".
  const [head = "", tail = ""] = ip.split("::");
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const h = groups(head);
  const t = groups(tail);
  const all = ip.includes("::") ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t] : h;
  return Buffer.concat(all.map((g) => Buffer.from(g.padStart(4, "0"), "hex")));
}

// GeneralSubtree { base GeneralName } (minimum 0 by default, no maximum).
function subtree(name: LeafName): Buffer {
  if (name.type === "dns") return tlv(0x30, tlv(0x82, Buffer.from(name.value, "ascii")));
  const addr = ipBytes(name.value);
  return tlv(0x30, tlv(0x87, Buffer.concat([addr, Buffer.alloc(addr.length, 0xff)])));
}

// NameConstraints: the names permitted, and for a kind of name no rule
// permits (IP addresses, or DNS names), every one excluded: a kind without
// a permitted subtree would otherwise be unconstrained.
export function nameConstraintsDer(names: readonly LeafName[]): Buffer {
  const permitted = names.map(subtree);
  const excluded: Buffer[] = [];
  if (!names.some((n) => n.type === "ip")) {
    excluded.push(tlv(0x30, tlv(0x87, Buffer.alloc(8))), tlv(0x30, tlv(0x87, Buffer.alloc(32))));
  }
  // An empty dNSName base matches every name.
  if (!names.some((n) => n.type === "dns")) excluded.push(tlv(0x30, tlv(0x82, Buffer.alloc(0))));
  const parts = [tlv(0xa0, Buffer.concat(permitted))];
  if (excluded.length > 0) parts.push(tlv(0xa1, Buffer.concat(excluded)));
  return tlv(0x30, Buffer.concat(parts));
}

export function nameConstraintsExtension(names: readonly LeafName[]): x509.Extension {
  // Critical, as RFC 5280 asks: a client that cannot honour it must refuse.
  return new x509.Extension(NAME_CONSTRAINTS_OID, true, nameConstraintsDer(names));
}

// The certificate's name constraints as DER, undefined without any.
export function nameConstraintsOf(cert: x509.X509Certificate): Buffer | undefined {
  const ext = cert.getExtension(NAME_CONSTRAINTS_OID);
  return ext ? Buffer.from(ext.value) : undefined;
}

export function sameConstraints(cert: x509.X509Certificate, names: readonly LeafName[] | undefined): boolean {
  const have = nameConstraintsOf(cert);
  if (names === undefined) return have === undefined;
  return have?.equals(nameConstraintsDer(names)) === true;
}
