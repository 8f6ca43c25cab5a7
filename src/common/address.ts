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
