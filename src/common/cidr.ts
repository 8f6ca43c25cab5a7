import { isIPv4, isIPv6 } from "node:net";

// IP addresses and CIDR blocks as numbers, for the egress policy. IPv4 is a
// 32-bit and IPv6 a 128-bit bigint; an IPv6 address that carries an IPv4
// one (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d) is the IPv4
// address, so a rule for 169.254.0.0/16 also stops ::ffff:169.254.169.254.

export interface Ip {
  readonly v: 4 | 6;
  readonly n: bigint;
}

export interface Cidr {
  readonly v: 4 | 6;
  readonly base: bigint;
  readonly bits: number;
  // As written in the config (for messages).
  readonly text: string;
}

const V4_MAPPED = 0xffffn;
const NAT64_PREFIX = 0x0064ff9bn << 96n;
const LOW32 = 0xffffffffn;

function parseV4(s: string): bigint {
  return s.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function parseV6(s: string): bigint {
  let text = s;
  // A trailing dotted IPv4 part is the last two groups.
  if (text.includes(".")) {
    const dot = text.lastIndexOf(":");
    const v4 = parseV4(text.slice(dot + 1));
    text = `${text.slice(0, dot + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const groups = (x: string) => (x === "" ? [] : x.split(":").map((g) => BigInt(parseInt(g, 16))));
  const gap = text.indexOf("::");
  const all =
    gap < 0
      ? groups(text)
      : (() => {
          const head = groups(text.slice(0, gap));
          const tail = groups(text.slice(gap + 2));
          return [...head, ...new Array<bigint>(8 - head.length - tail.length).fill(0n), ...tail];
        })();
  return all.reduce((acc, g) => (acc << 16n) | g, 0n);
}

// An address as a connection would see it; undefined when not an IP.
export function parseIp(raw: string): Ip | undefined {
  const s = raw.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (isIPv4(s)) return { v: 4, n: parseV4(s) };
  if (!isIPv6(s)) return undefined;
  const n = parseV6(s);
  if (n >> 32n === V4_MAPPED || n >> 32n === NAT64_PREFIX >> 32n) return { v: 4, n: n & LOW32 };
  return { v: 6, n };
}

// "10.0.0.0/8", "fd00::/8", or a single address (a /32 or /128).
export function parseCidr(text: string): Cidr {
  const t = text.trim();
  const slash = t.indexOf("/");
  const addr = slash < 0 ? t : t.slice(0, slash);
  const s = addr.replace(/^\[|\]$/g, "");
  const v: 4 | 6 | undefined = isIPv4(s) ? 4 : isIPv6(s) ? 6 : undefined;
  if (v === undefined) throw new Error(`${JSON.stringify(text)} is not an IP address or CIDR block`);
  const max = v === 4 ? 32 : 128;
  const bitsText = slash < 0 ? String(max) : t.slice(slash + 1);
  const bits = Number(bitsText);
  if (!/^\d{1,3}$/.test(bitsText) || bits > max) throw new Error(`${JSON.stringify(text)}: prefix length must be 0..${max}`);
  const n = v === 4 ? parseV4(s) : parseV6(s);
  return { v, base: n & mask(v, bits), bits, text: t };
}

function mask(v: 4 | 6, bits: number): bigint {
  const width = v === 4 ? 32n : 128n;
  const all = (1n << width) - 1n;
  return bits === 0 ? 0n : all ^ ((1n << (width - BigInt(bits))) - 1n);
}

export function contains(c: Cidr, ip: Ip): boolean {
  return c.v === ip.v && (ip.n & mask(c.v, c.bits)) === c.base;
}

// A CIDR list's check for the config schema.
export function cidrListCheck(v: readonly string[]): string | undefined {
  for (const c of v) {
    try {
      parseCidr(c);
    } catch (err) {
      return (err as Error).message;
    }
  }
  return undefined;
}

// Whom a remote address counts as for per-address limits: an IPv4 address
// itself, an IPv6 one by its /64 (a host usually has a whole /64 to pick
// addresses from, so counting single addresses would bound nothing).
export function addressGroup(raw: string): string {
  const ip = parseIp(raw);
  if (!ip) return raw;
  if (ip.v === 4) return [24n, 16n, 8n, 0n].map((s) => (ip.n >> s) & 0xffn).join(".");
  const top = ip.n >> 64n;
  return `${[48n, 32n, 16n, 0n].map((s) => ((top >> s) & 0xffffn).toString(16)).join(":")}::/64`;
}
