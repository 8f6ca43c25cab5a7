// Config fields of the daemon's API listeners, of the clients that reach it
// (`get`, `cache`) and of the egress policy; used by schemas.ts.
import { isAbsolute } from "node:path";
import { field } from "./config.js";
import { parseHostPort } from "./address.js";
import { defaultDaemonSocket } from "./daemon-socket.js";
import { cidrListCheck } from "./cidr.js";

function listenCheck(v: readonly string[]): string | undefined {
  if (v.length === 0) return "give at least one address (unix:PATH or HOST:PORT)";
  let sockets = 0;
  let tcp = 0;
  for (const a of v) {
    if (a.startsWith("unix:")) {
      if (!isAbsolute(a.slice(5))) return `${JSON.stringify(a)}: expected unix:/ABSOLUTE/PATH`;
      sockets++;
    } else {
      try {
        parseHostPort(a);
      } catch {
        return `${JSON.stringify(a)}: expected unix:PATH or HOST:PORT`;
      }
      tcp++;
    }
  }
  return sockets > 1 || tcp > 1 ? "at most one unix:PATH and one HOST:PORT" : undefined;
}

export const daemonListenField = () =>
  field(
    "list",
    [`unix:${defaultDaemonSocket()}`] as string[],
    "daemon API listeners (what `get` and `cache` talk to): unix:PATH, the local API (file mode 0660, any local caller that may open it), and/or HOST:PORT, a network API (mutual TLS with --tls-*: client certificates, and the scheduler's triggers, which a seed peer needs; without TLS loopback only unless --insecure)",
    { check: listenCheck, flag: true, legacy: "listen" },
  );

export const socketGroupField = () =>
  field("string", "", "group (name or gid) given access to the API's Unix socket (mode 0660; default: the daemon's own group)", {
    check: (v) => (v === "" || /^\d+$/.test(v) || /^[a-z_][a-z0-9_.-]*\$?$/i.test(v) ? undefined : "must be a group name or a numeric gid"),
    flag: true,
    legacy: "socketGroup",
  });

export const egressGroup = () => ({
  allow: field(
    "list",
    [] as string[],
    "CIDR blocks origin fetches (and the proxy) may reach although a shorter deny rule or a built-in one covers them (the longest match decides)",
    { check: cidrListCheck },
  ),
  deny: field(
    "list",
    [] as string[],
    "CIDR blocks origin fetches (and the proxy) may not reach, e.g. 10.0.0.0/8; link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200, ...) are always denied unless allowed here",
    { check: cidrListCheck },
  ),
});

// `get --daemon` and `cache --daemon` (empty: the default socket); checked
// when used (cli/daemon-target.ts): HOST:PORT alone is an http URL.
export const daemonTargetField = () =>
  field(
    "string",
    "",
    "daemon API: unix:PATH, http://HOST:PORT (loopback, no TLS) or https://HOST:PORT (with --tls-*) (default: the daemon's default socket, as in its server.listen: the user's own daemon's when one listens there, else the machine's)",
  );

// A client's certificate for an https:// daemon API.
export const clientTlsFields = () => ({
  tlsCa: field("string", "", "with an https:// daemon API: the cluster CA (PEM)"),
  tlsCert: field("string", "", "with an https:// daemon API: a client certificate (role client) (PEM)"),
  tlsKey: field("string", "", "with an https:// daemon API: its private key (PEM)"),
});
