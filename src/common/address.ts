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
