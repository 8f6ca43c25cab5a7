import { isIP, isIPv4, isIPv6 } from "node:net";
import { domainToASCII } from "node:url";
import { DamselflyError } from "../../common/errors.js";

// The name a proxy leaf certificate is issued for.
export interface LeafName {
  readonly type: "dns" | "ip";
  // Canonical form: the cache key and the SAN value.
  readonly value: string;
}

function invalidHost(host: string, why: string): DamselflyError {
  return new DamselflyError("DF_ERR_INVALID_REQUEST", `cannot issue a proxy certificate for ${JSON.stringify(host)}: ${why}`);
}

// Accepts what a CONNECT line or SNI carries: "name", "name:port", "1.2.3.4",
// "1.2.3.4:port", "::1", "[::1]" or "[::1]:port".
export function parseHost(input: string): LeafName {
  let host = input;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    if (end < 0 || !/^(:\d{1,5})?$/.test(host.slice(end + 1))) throw invalidHost(input, "malformed bracketed address");
    host = host.slice(1, end);
    if (!isIPv6(host)) throw invalidHost(input, "not an IPv6 address");
    return ipName(host);
  }
  if (isIP(host) !== 0) return ipName(host);
  const colon = host.lastIndexOf(":");
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(host.slice(colon + 1))) throw invalidHost(input, "not a host name or IP address");
    host = host.slice(0, colon);
    if (isIPv4(host)) return ipName(host);
  }
  return { type: "dns", value: dnsName(input, host) };
}

function ipName(ip: string): LeafName {
  if (isIPv4(ip)) return { type: "ip", value: ip };
  // The zone names an interface on this machine; the certificate holds the address.
  const address = ip.replace(/%.*$/, "");
  // The URL parser canonicalises IPv6 (embedded IPv4 included) into the plain
  // hex groups the SAN encoder understands.
  let canonical: string;
  try {
    canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    throw invalidHost(ip, "not an IPv6 address");
  }
  return { type: "ip", value: canonical };
}

const DNS_LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

function dnsName(input: string, host: string): string {
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  // domainToASCII parses like a URL: it would cut "a/b" to "a" and rewrite
  // "1.2.3" as "1.2.0.3", so ASCII input must already be a plain name.
  if (/[^\u0080-\u{10ffff}A-Za-z0-9._-]/u.test(name)) throw invalidHost(input, "not a valid DNS name");
  const ascii = domainToASCII(name);
  if (/^[\x00-\x7f]*$/.test(name) && ascii !== name.toLowerCase()) throw invalidHost(input, "not a valid DNS name");
  if (ascii === "" || ascii.length > 253) throw invalidHost(input, "not a valid DNS name");
  const labels = ascii.split(".");
  if (!labels.every((l) => DNS_LABEL.test(l))) throw invalidHost(input, "not a valid DNS name");
  // "999.1.1.1" or "10.0.0": numeric, yet no IP address; no client would match it.
  if (/^\d+$/.test(labels[labels.length - 1])) throw invalidHost(input, "neither a DNS name nor an IP address");
  return ascii;
}
