import dns, { type LookupAddress, type LookupAllOptions, type LookupOneOptions } from "node:dns";
import net, { isIP } from "node:net";
import { buildConnector } from "undici";
import { DamselflyError } from "./errors.js";
import { contains, parseCidr, parseIp, type Cidr, type Ip } from "./cidr.js";

// Where the daemon may connect when it fetches from an origin (a URL a
// client, a scheduler or the proxy named): a request must not make it reach
// the instance metadata service or anything else only this host can reach
// (SSRF). Link-local and the known cloud metadata addresses are denied
// always; everything else is allowed unless the operator's lists say
// otherwise (docs/operations/security.md, "Egress policy").
//
// The RESOLVED address is checked, at connect time (a custom DNS lookup and
// a check of literal addresses in the connector), so a name that resolves to
// a public address when checked and to a private one when used (DNS
// rebinding) gains nothing, and every redirect hop is checked alike.

export const BUILTIN_DENY: readonly string[] = [
  // IPv4 link-local: the metadata service of AWS, GCP, Azure, OCI,
  // DigitalOcean, OpenStack (169.254.169.254), ECS task credentials (.170.2).
  "169.254.0.0/16",
  // IPv6 link-local.
  "fe80::/10",
  // AWS IMDS over IPv6.
  "fd00:ec2::254/128",
  // Alibaba Cloud metadata.
  "100.100.100.200/32",
  // Azure WireServer (platform agent and extension configuration).
  "168.63.129.16/32",
  // Oracle Cloud Classic metadata.
  "192.0.0.192/32",
  // "This network": 0.0.0.0 reaches the local host on Linux.
  "0.0.0.0/8",
  "::/128",
];

export interface EgressLists {
  readonly allow: readonly string[];
  readonly deny: readonly string[];
}

interface Rule {
  readonly cidr: Cidr;
  readonly allow: boolean;
  // Operator's rules win over the built-in ones of the same length.
  readonly configured: boolean;
}

export type Lookup = (hostname: string, options: { all: true; family?: number }, cb: (err: Error | null, addrs: LookupAddress[]) => void) => void;

const systemLookup: Lookup = (hostname, options, cb) => dns.lookup(hostname, options, cb);

export class EgressPolicy {
  private readonly rules: Rule[];

  // `resolve` replaces the system resolver (tests).
  constructor(
    lists: EgressLists = { allow: [], deny: [] },
    private readonly resolve: Lookup = systemLookup,
  ) {
    const rules: Rule[] = [
      ...BUILTIN_DENY.map((t) => ({ cidr: parseCidr(t), allow: false, configured: false })),
      ...lists.allow.map((t) => ({ cidr: parseCidr(t), allow: true, configured: true })),
      ...lists.deny.map((t) => ({ cidr: parseCidr(t), allow: false, configured: true })),
    ];
    // The longest prefix decides; at equal length the operator's rule, and
    // of two of theirs, deny.
    const rank = (r: Rule) => r.cidr.bits * 4 + (r.configured ? 2 : 0) + (r.allow ? 0 : 1);
    this.rules = rules.sort((a, b) => rank(b) - rank(a));
  }

  // The rule that denies `ip`, or undefined when it may be reached.
  denies(ip: Ip): Rule | undefined {
    const r = this.rules.find((x) => contains(x.cidr, ip));
    return r && !r.allow ? r : undefined;
  }

  // Throws DF_ERR_EGRESS_DENIED when the literal address `address` (reached
  // as `host`) is denied.
  check(host: string, address: string): void {
    const ip = parseIp(address);
    if (!ip) throw denied(host, address, "not an IP address");
    const r = this.denies(ip);
    if (r) throw denied(host, address, r.configured ? `egress deny ${r.cidr.text}` : `built-in deny ${r.cidr.text}`);
  }

  // A dns.lookup for net/tls connect: only allowed addresses come back; a
  // name with none is DF_ERR_EGRESS_DENIED.
  readonly lookup = (
    hostname: string,
    options: LookupOneOptions | LookupAllOptions | number | undefined,
    cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    const o = typeof options === "number" ? { family: options } : (options ?? {});
    const family = typeof o.family === "number" ? o.family : o.family === "IPv6" ? 6 : o.family === "IPv4" ? 4 : 0;
    this.resolve(hostname, { all: true, ...(family ? { family } : {}) }, (err, addrs) => {
      if (err) return cb(err, "");
      const ok = addrs.filter((a) => {
        const ip = parseIp(a.address);
        return ip !== undefined && this.denies(ip) === undefined;
      });
      if (ok.length === 0) {
        const first = addrs[0]?.address ?? "no address";
        try {
          this.check(hostname, first);
        } catch (e) {
          return cb(e as Error, "");
        }
        return cb(denied(hostname, first, "no allowed address"), "");
      }
      if ((o as LookupAllOptions).all) cb(null, ok);
      else cb(null, ok[0]!.address, ok[0]!.family);
    });
  };

  // An undici connector whose every connection goes through the policy:
  // names through its DNS lookup, literal addresses checked here (net.connect
  // does not look them up). Redirect hops open their connections here too.
  connector(options: buildConnector.BuildOptions = {}): buildConnector.connector {
    return this.wrap(buildConnector({ ...options, lookup: this.lookup as never }));
  }

  // `base` (a connector resolving names through this.lookup) with literal
  // addresses checked too.
  wrap(base: buildConnector.connector): buildConnector.connector {
    return (o, cb) => {
      const host = o.hostname.replace(/^\[|\]$/g, "");
      if (isIP(host)) {
        try {
          this.check(host, host);
        } catch (err) {
          queueMicrotask(() => cb(err as Error, null));
          return;
        }
      }
      base(o, cb);
    };
  }

  // The addresses `host` resolves to (an IP literal: itself) that the policy
  // allows, in the resolver's order; DF_ERR_EGRESS_DENIED when there is none.
  allowed(host: string): Promise<string[]> {
    const literal = host.replace(/^\[|\]$/g, "");
    if (isIP(literal)) {
      try {
        this.check(host, literal);
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve([literal]);
    }
    return new Promise((resolve, reject) =>
      this.lookup(host, { all: true }, (err, addrs) => (err ? reject(err) : resolve((addrs as LookupAddress[]).map((a) => a.address)))),
    );
  }

  // net.connect to host:port through the policy (the proxy's CONNECT tunnels).
  connect(host: string, port: number): net.Socket {
    if (isIP(host.replace(/^\[|\]$/g, ""))) {
      const socket = new net.Socket();
      try {
        this.check(host, host);
      } catch (err) {
        process.nextTick(() => socket.destroy(err as Error));
        return socket;
      }
      return socket.connect({ host: host.replace(/^\[|\]$/g, ""), port });
    }
    return net.connect({ host, port, lookup: this.lookup as never });
  }
}

function denied(host: string, address: string, why: string): DamselflyError {
  const at = host === address ? address : `${host} (${address})`;
  return new DamselflyError("DF_ERR_EGRESS_DENIED", `origin ${at} is denied by the egress policy: ${why}`);
}
