import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { DamselflyError } from "./errors.js";

export interface HostPort {
  host: string;
  port: number;
}

// Parses "HOST:PORT", "[v6]:PORT" or ":PORT" (all interfaces).
export function parseHostPort(s: string, what = "address"): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new DamselflyError("DF_ERR_CONFIG", `invalid ${what} ${JSON.stringify(s)}: expected HOST:PORT`);
  }
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export function httpUrl(hp: HostPort): string {
  const host = hp.host === "0.0.0.0" ? "127.0.0.1" : hp.host === "::" ? "::1" : hp.host;
  return `http://${formatHostPort({ host, port: hp.port })}`;
}

// The address others should dial: the listen address unless it is a
// wildcard, then the first non-internal IPv4.
export function advertisedIp(listenHost: string): string {
  if (listenHost !== "0.0.0.0" && listenHost !== "::" && listenHost !== "") return listenHost;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

// One spelling per address: brackets dropped, lower case, IPv6 compressed,
// IPv4-mapped IPv6 as the IPv4 address. Anything else is returned trimmed.
export function normalizeIp(ip: string): string {
  let s = ip.trim().toLowerCase();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (s.startsWith("::ffff:") && isIP(s.slice(7)) === 4) return s.slice(7);
  if (isIP(s) !== 6) return s;
  try {
    const host = new URL(`http://[${s}]/`).hostname.slice(1, -1);
    return host.startsWith("::ffff:") && isIP(host.slice(7)) === 4 ? host.slice(7) : host;
  } catch {
    return s;
  }
}

// localhost, 127.0.0.0/8 or ::1, however spelt.
export function isLoopbackHost(host: string): boolean {
  const s = normalizeIp(host);
  return s === "localhost" || s === "::1" || (isIP(s) === 4 && s.startsWith("127."));
}
