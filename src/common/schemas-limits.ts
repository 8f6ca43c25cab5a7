// The limits groups of the config schemas (schemas.ts): what a stranger who
// reaches a port may make a component hold (docs/operations/security.md,
// "Limits").
import { field } from "./config.js";
import { positive } from "./schema-checks.js";
import { parseHostPorts, parsePortRanges } from "./port-ranges.js";

const nonNegative = (v: number) => (v >= 0 ? undefined : "must be >= 0");

function throwsCheck(parse: (v: string[]) => unknown): (v: string[]) => string | undefined {
  return (v) => {
    try {
      parse(v);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  };
}
const portRangesCheck = throwsCheck(parsePortRanges);
const hostPortsCheck = throwsCheck((v) => v.map(parseHostPorts));

// The scheduler's: per registrant (a certificate's role and name with TLS; a
// remote address, an IPv6 one by its /64, without, loopback exempt), per
// host and in all, per connection, and the bounds of what any daemon tells
// it (docs/operations/scheduler.md).
export const schedulerLimits = () => ({
  hostsPerRegistrant: field("int", 4, "hosts one registrant may have announced at once", { check: positive }),
  tasksPerRegistrant: field("int", 10_000, "tasks one registrant's peers may bring into the scheduler", { check: positive }),
  peersPerRegistrant: field("int", 10_000, "peers (downloads and cached tasks) on one registrant's hosts", { check: positive }),
  peersPerHost: field("int", 10_000, "peers (downloads and cached tasks) on one host, whoever announced it (loopback callers included)", { check: positive }),
  maxHosts: field("int", 20_000, "hosts the scheduler holds in all; a new host over it is refused", { check: positive }),
  maxTasks: field("int", 100_000, "tasks the scheduler holds in all; a peer bringing a new task over it is refused", { check: positive }),
  maxPeers: field("int", 200_000, "peers the scheduler holds in all; a new peer over it is refused", { check: positive }),
  maxAnnounceInterval: field("duration", 120_000, "announce interval a host may declare at most (a host is dropped after 3 silent intervals)", {
    check: positive,
  }),
  maxContentLength: field("bytes", 1024 ** 4, "largest task (content length) the scheduler accepts a report of", { check: positive }),
  connectionsPerAddress: field("int", 1024, "HTTP/2 connections one remote address may hold open (more are closed at once; 0: no cap)", {
    check: nonNegative,
  }),
  streamsPerConnection: field("int", 1024, "calls (announce streams included) one HTTP/2 connection may have open at once", { check: positive }),
});

// The daemon's data plane (upload port).
export const uploadLimits = () => ({
  slotsPerAddress: field("int", 0, "piece uploads one remote address may have streaming at once (0: half of the concurrency, rounded up)", {
    check: nonNegative,
  }),
  connectionsPerAddress: field("int", 256, "connections one remote address may hold open to the upload port (more are closed at once)", {
    check: positive,
  }),
  writeStallTimeout: field(
    "duration",
    30_000,
    "a connection with a response to send that gets nothing sent for this long (its child stopped reading) is closed, and its upload slot freed",
    { check: positive },
  ),
  idleTimeout: field("duration", 60_000, "a connection without a request in progress (new, or kept alive between requests) is closed after this long", {
    check: positive,
  }),
});

// What the proxy relays: docs/operations/mirror-and-proxy.md, "What the
// proxy relays".
export const proxyLimits = () => ({
  connectPorts: field("list", ["443"] as string[], "ports CONNECT may open tunnels to (ports and ranges, e.g. 443,8443,5000-5010)", {
    check: portRangesCheck,
  }),
  ports: field("list", ["80", "443", "1025-65535"] as string[], "ports absolute-form proxy requests and mirror requests may go to", {
    check: portRangesCheck,
  }),
  allowLocal: field(
    "list",
    [] as string[],
    "HOST:PORT (or HOST:LOW-HIGH) destinations the proxy may reach although they are loopback or this node's own addresses, which it denies otherwise (the daemon API, the manager, other local services); the registries of registryMirror and plainHttpRegistries are allowed too",
    { check: hostPortsCheck },
  ),
});
