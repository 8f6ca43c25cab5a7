// Where `get` and `cache` reach the daemon's API: its Unix socket (the
// default), http://HOST:PORT on loopback, or https://HOST:PORT with a client
// certificate, the server's own certificate then having to be a peer's or a
// seed peer's of our CA (it receives the URL and the origin credentials).
import http2 from "node:http2";
import net from "node:net";
import { defaultDaemonTarget, socketPathOf } from "../common/daemon-socket.js";
import { DamselflyError } from "../common/errors.js";
import type { TlsIdentity } from "../common/tls/identity.js";
import type { Role } from "../common/tls/roles.js";

export const DAEMON_SERVER_ROLES: readonly Role[] = ["peer", "seed-peer"];

export interface ClientTlsFiles {
  tlsCa: string;
  tlsCert: string;
  tlsKey: string;
}

export interface DaemonTarget {
  // As messages name it: unix:PATH or the URL's origin.
  readonly label: string;
  // unix:PATH, or the http(s) origin.
  readonly target: string;
  readonly tls: TlsIdentity | undefined;
  // A new HTTP/2 session to the daemon.
  connect(): http2.ClientHttp2Session;
}

function usage(raw: string): DamselflyError {
  return new DamselflyError("DF_ERR_USAGE", `invalid --daemon ${JSON.stringify(raw)}: expected unix:PATH, http://HOST:PORT or https://HOST:PORT`);
}

// "unix:PATH" as is; a URL (or HOST:PORT, taken as http) as its origin;
// empty: the default socket.
export function normalizeDaemonTarget(raw: string): string {
  if (raw === "") return defaultDaemonTarget();
  if (raw.startsWith("unix:")) {
    if (!raw.slice(5).startsWith("/")) throw usage(raw);
    return raw;
  }
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw usage(raw);
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.hostname === "") throw usage(raw);
  return u.origin;
}

// The target with its TLS identity loaded (files read once: `get` is short-lived).
export async function daemonTarget(raw: string, files: ClientTlsFiles): Promise<DaemonTarget> {
  const target = normalizeDaemonTarget(raw);
  const given = [files.tlsCa, files.tlsCert, files.tlsKey].filter((f) => f !== "").length;
  const https = target.startsWith("https:");
  if (given > 0 && given < 3) throw new DamselflyError("DF_ERR_USAGE", "--tls-ca, --tls-cert and --tls-key go together");
  if (https && given === 0)
    throw new DamselflyError("DF_ERR_USAGE", `${target} is a TLS daemon API: give --tls-ca, --tls-cert and --tls-key (a client certificate)`);
  if (!https && given > 0) throw new DamselflyError("DF_ERR_USAGE", "--tls-ca/--tls-cert/--tls-key need an https:// --daemon");
  const tls = https ? await loadIdentity(files) : undefined;
  return { label: target, target, tls, connect: () => connectTo(target, tls) };
}

async function loadIdentity(files: ClientTlsFiles): Promise<TlsIdentity> {
  const { TlsIdentity } = await import("../common/tls/identity.js");
  return TlsIdentity.load({ ca: files.tlsCa, cert: files.tlsCert, key: files.tlsKey }, { watch: false });
}

// A plain URL string is an http(s) target without a client certificate
// (tests, and callers that built their own).
export function asTarget(t: DaemonTarget | string): DaemonTarget {
  return typeof t === "string" ? { label: t, target: t, tls: undefined, connect: () => connectTo(t, undefined) } : t;
}

function connectTo(target: string, tls: TlsIdentity | undefined): http2.ClientHttp2Session {
  const path = socketPathOf(target);
  if (path !== undefined) return http2.connect("http://localhost", { createConnection: () => net.connect(path) });
  if (tls) return http2.connect(target, { ...tls.clientOptions({ roles: DAEMON_SERVER_ROLES }), ALPNProtocols: ["h2"] });
  return http2.connect(target);
}

// Why a connection failed, in words a user can act on.
export function unreachableHint(target: string, err: NodeJS.ErrnoException): string {
  const path = socketPathOf(target);
  if (path === undefined) return "";
  if (err.code === "EACCES") return ` (the socket is mode 0660: join its group, see the daemon's server.socketGroup)`;
  if (err.code === "ENOENT") return " (no daemon listening there: start one, or give --daemon)";
  return "";
}
