import net from "node:net";
import { networkInterfaces } from "node:os";
import type { Agent, buildConnector } from "undici";
import { parseIp, type Ip } from "../../common/cidr.js";
import { DamselflyError } from "../../common/errors.js";
import { inPortRanges, parseHostPorts, parsePortRanges, type PortRange } from "../../common/port-ranges.js";
import type { EgressPolicy } from "../../common/egress.js";
import { sourceAgent, type SourceOptions } from "../source/http-source.js";

// The methods a registry or HTTP client needs through a proxy; anything
// else (TRACE, WebDAV, made-up methods) is not relayed.
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

export interface ProxyPolicyOptions {
  // The daemon's egress policy: the proxy reaches nothing origin fetches may not.
  egress: EgressPolicy;
  // proxy.connectPorts, proxy.ports, proxy.allowLocal.
  connectPorts: readonly string[];
  ports: readonly string[];
  allowLocal: readonly string[];
  // Registries the operator named (registryMirror, plainHttpRegistries):
  // allowed as local destinations too.
  registries: readonly string[];
  // This node's own addresses (default: its interfaces', read at each check).
  ownAddresses?: () => Iterable<string>;
}

interface Allowed {
  // An address, or a name as the operator wrote it.
  ip: Ip | undefined;
  name: string;
  ports: PortRange;
}

// Where the proxy relays to, as Squid's default configuration decides:
// CONNECT only to the TLS ports (proxy.connectPorts, 443), other requests only
// to safe ports (proxy.ports: 80, 443, 1025-65535) with the methods clients
// use, and never to loopback or to this node's own addresses unless the
// operator listed the destination (proxy.allowLocal): the proxy
// authenticates no one, and without this it would hand the daemon API, the
// manager and any other local-only service to whoever reaches it. The
// resolved address is checked, when connecting (DNS rebinding gains
// nothing), after the egress policy.
export class ProxyPolicy {
  private readonly connectPorts: PortRange[];
  private readonly ports: PortRange[];
  private readonly allowLocal: Allowed[];
  private readonly ownAddresses: () => Iterable<string>;

  constructor(private readonly o: ProxyPolicyOptions) {
    this.connectPorts = parsePortRanges(o.connectPorts);
    this.ports = parsePortRanges(o.ports);
    this.allowLocal = [...o.allowLocal.map(parseHostPorts), ...o.registries.flatMap(registryEntry)].map((a) => ({ ...a, ip: parseIp(a.host), name: a.host }));
    this.ownAddresses = o.ownAddresses ?? interfaceAddresses;
  }

  // An absolute-form or mirror request: its method and its port.
  checkRequest(method: string, url: URL): void {
    if (!METHODS.has(method)) throw denied(`the proxy does not relay ${method} requests`);
    const port = portOf(url);
    if (!inPortRanges(this.ports, port)) throw denied(`the proxy does not relay requests to port ${port} (proxy.ports)`);
  }

  checkConnectPort(port: number): void {
    if (!inPortRanges(this.connectPorts, port)) throw denied(`CONNECT to port ${port} is not allowed (proxy.connectPorts)`);
  }

  // The address to connect to for host:port: the first the egress policy
  // allows that is not local, or listed if it is.
  async resolve(host: string, port: number): Promise<string> {
    const addrs = await this.o.egress.allowed(host);
    const name = host.replace(/^\[|\]$/g, "").toLowerCase();
    // Compared as numbers: every spelling of an address (::ffff:7f00:1 is
    // 127.0.0.1) is the same.
    const own = new Set([...this.ownAddresses()].flatMap((a) => key(parseIp(a))));
    const ok = addrs.find((a) => {
      const ip = parseIp(a);
      return (ip !== undefined && !isLoopback(ip) && !own.has(key(ip))) || this.listed(name, ip, port);
    });
    if (ok === undefined)
      throw denied(`${host}:${port} is a loopback or this node's own address; the proxy reaches those only when listed in proxy.allowLocal`);
    return ok;
  }

  // A CONNECT tunnel's upstream: a socket that connects once the
  // destination passed, or fails with the policy's error.
  connect(host: string, port: number): net.Socket {
    const socket = new net.Socket();
    this.resolve(host, port).then(
      // A socket destroyed meanwhile (the client left) stays so: connect()
      // would bring it back.
      (address) => void (socket.destroyed || socket.connect({ host: address, port })),
      (err: Error) => socket.destroy(err),
    );
    return socket;
  }

  // The proxy's own agent (forwards, registry access checks): the source's
  // timeouts and trust, each connection to an address that passed.
  agent(source: SourceOptions): Agent {
    return sourceAgent(source, (base) => (o: buildConnector.Options, cb: buildConnector.Callback) => {
      const port = Number(o.port) || (o.protocol === "https:" ? 443 : 80);
      // The name stays in o.host: TLS still verifies the certificate for it.
      this.resolve(o.hostname, port).then(
        (address) => base({ ...o, hostname: address }, cb),
        (err: Error) => cb(err, null),
      );
    });
  }

  private listed(name: string, ip: Ip | undefined, port: number): boolean {
    return this.allowLocal.some((a) => port >= a.ports[0] && port <= a.ports[1] && (a.ip && ip ? key(a.ip) === key(ip) : a.name === name));
  }
}

const key = (ip: Ip | undefined): string => (ip ? `${ip.v}/${ip.n}` : "");

// 127.0.0.0/8 and ::1.
function isLoopback(ip: Ip): boolean {
  return ip.v === 4 ? ip.n >> 24n === 127n : ip.n === 1n;
}

function denied(message: string): DamselflyError {
  return new DamselflyError("DF_ERR_PROXY_DENIED", message);
}

function portOf(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
}

// A registry of the config ("host[:port]" or a URL) as an allowed
// destination: its host on its port (the scheme's when none is given,
// both web ports for a bare host).
function registryEntry(raw: string): Array<{ host: string; ports: PortRange }> {
  const withScheme = /^https?:\/\//i.test(raw);
  let url: URL;
  try {
    url = new URL(withScheme ? raw : `http://${raw}`);
  } catch {
    return [];
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (url.port) return [{ host, ports: [Number(url.port), Number(url.port)] }];
  if (withScheme) return [{ host, ports: url.protocol === "https:" ? [443, 443] : [80, 80] }];
  return [
    { host, ports: [80, 80] },
    { host, ports: [443, 443] },
  ];
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
}
