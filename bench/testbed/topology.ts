// The testbed's network: one bridge in the root namespace (no address, so the
// root namespace itself is not on the testbed) and one namespace per host, each
// joined to the bridge by a veth pair:
//
//   dftb-o   (origin)  eth0 10.214.0.1/16      <-veth->  dftbv-o   -- dftb0 (bridge)
//   dftb-p<i> (peer i) eth0 10.214.0.<10+i>/16 <-veth->  dftbv-p<i> --'
//
// Every host's link is shaped in both directions with tbf: the namespace's
// eth0 egress is the host's upload, the bridge-side veth's egress is its
// download. Namespaces have no default route, so nothing inside can reach an
// address outside 10.214.0.0/16. IPv6 is off on every testbed interface.
//
// teardown() (and cleanupLeftovers() at start, for a crashed earlier run)
// kills whatever runs inside the namespaces, deletes them (which deletes
// their veth pairs) and the bridge.
import { readFileSync, writeFileSync } from "node:fs";
import { mustRun, runCommand } from "../../test/helpers/netns.js";
import { sleep } from "./proc.js";

export const BRIDGE = "dftb0";
const NS_PREFIX = "dftb-";
const IF_PREFIX = "dftbv-";
export const SUBNET = "10.214.0.0/16";
export const ORIGIN_IP = "10.214.0.1";
export const MAX_PEERS = 200;

export interface Host {
  // "origin" or "p<i>"
  readonly id: string;
  // Network namespace name.
  readonly ns: string;
  readonly ip: string;
  // The bridge-side veth in the root namespace.
  readonly brIf: string;
}

export interface LinkBytes {
  // Bytes the host sent (its upload) and received, counted at the bridge-side
  // veth (what the host's eth0 actually transmitted / was delivered),
  // Ethernet, IP and TCP headers included.
  tx: number;
  rx: number;
  // Packets, the same way: the kernel's network work (and its softirq CPU)
  // goes by packets more than by bytes.
  txPackets: number;
  rxPackets: number;
}

export interface TcpCounters {
  // Segments handed to the host's own network stack, retransmissions
  // included (a segment dropped by the host's own shaper and sent again
  // counts each time).
  outSegs: number;
  retransSegs: number;
}

export interface TestbedOptions {
  // TCP congestion control inside the hosts. The machine's own default varies
  // (bbr on some, cubic on most) and changes how TCP behaves against the
  // shaper's queue, and with it the kernel's CPU cost: results should not
  // depend on it. Default cubic, Linux's default; "inherit" keeps the
  // machine's.
  congestionControl?: string;
}

export interface Testbed {
  readonly origin: Host;
  readonly peers: readonly Host[];
  readonly peerRateBps: number;
  readonly originRateBps: number;
  counters(): Map<string, LinkBytes>;
  // TCP congestion control the hosts use (see TestbedOptions).
  readonly congestionControl: string;
  // Every host's TCP segment counters (from its namespace's /proc/net/snmp).
  tcpCounters(): Promise<Map<string, TcpCounters>>;
  // tc statistics of every shaped interface (drops, overlimits), as text.
  qdiscStats(): Promise<string>;
  teardown(): Promise<void>;
}

export function peerIp(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_PEERS) throw new Error(`peer index ${i} out of range 0..${MAX_PEERS - 1}`);
  return `10.214.0.${10 + i}`;
}

function host(id: string, ip: string): Host {
  return { id, ns: NS_PREFIX + id, ip, brIf: IF_PREFIX + id };
}

const T = { timeoutMs: 15_000 };

async function ourNamespaces(): Promise<string[]> {
  const r = await runCommand("ip", ["netns", "list"], T);
  return r.stdout
    .split("\n")
    .map((l) => l.split(/\s+/)[0]!)
    .filter((n) => n.startsWith(NS_PREFIX));
}

async function ourLinks(): Promise<string[]> {
  const r = await runCommand("ip", ["-o", "link", "show"], T);
  const names: string[] = [];
  for (const l of r.stdout.split("\n")) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(l);
    if (m && (m[1] === BRIDGE || m[1]!.startsWith(IF_PREFIX))) names.push(m[1]!);
  }
  return names;
}

// Removes every namespace, veth and bridge of this testbed, including those
// of a crashed earlier run. Processes inside are SIGKILLed first.
export async function cleanupLeftovers(): Promise<void> {
  for (const ns of await ourNamespaces()) {
    const pids = await runCommand("ip", ["netns", "pids", ns], T);
    for (const p of pids.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s))) {
      try {
        process.kill(Number(p), "SIGKILL");
      } catch {
        // gone
      }
    }
    await runCommand("ip", ["netns", "del", ns], T);
  }
  for (const l of await ourLinks()) if (l !== BRIDGE) await runCommand("ip", ["link", "del", "dev", l], T);
  if ((await ourLinks()).includes(BRIDGE)) await runCommand("ip", ["link", "del", "dev", BRIDGE], T);
  // Namespaces are torn down asynchronously: wait (bounded) for the veths.
  for (let i = 0; i < 100; i++) {
    if ((await ourLinks()).length === 0 && (await ourNamespaces()).length === 0) return;
    await sleep(100);
  }
  throw new Error(`testbed leftovers still present: ${(await ourLinks()).join(" ")} ${(await ourNamespaces()).join(" ")}`);
}

// tbf parameters for a rate: a bucket of ~4 ms of traffic (at least 64 KiB, so
// a full-size GSO packet fits) and a queue of 50 ms.
function tbf(rateBps: number): string[] {
  const burst = Math.max(64 * 1024, Math.round((rateBps / 8) * 0.004));
  return ["root", "handle", "1:", "tbf", "rate", `${rateBps}bit`, "burst", String(burst), "latency", "50ms"];
}

function disableIpv6(ifName: string): void {
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${ifName}/disable_ipv6`, "1");
  } catch {
    // no IPv6 in this kernel
  }
}

const ALLOWED_CC = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
const HOST_CC = "/proc/sys/net/ipv4/tcp_congestion_control";

// A namespace may only pick an algorithm the machine allows: adds `cc` to the
// allowed list if needed (the machine's default is untouched) and returns
// the list to restore afterwards, or undefined if nothing changed.
function allowCongestionControl(cc: string): string | undefined {
  const allowed = readFileSync(ALLOWED_CC, "utf8").trim();
  if (allowed.split(/\s+/).includes(cc)) return undefined;
  writeFileSync(ALLOWED_CC, `${allowed} ${cc}`);
  return allowed;
}

function parseTcpSnmp(text: string): TcpCounters | undefined {
  const lines = text.split("\n").filter((l) => l.startsWith("Tcp:"));
  if (lines.length < 2) return undefined;
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/);
  const get = (n: string) => Number(values[names.indexOf(n)] ?? NaN);
  return { outSegs: get("OutSegs"), retransSegs: get("RetransSegs") };
}

export async function createTestbed(peerCount: number, peerRateBps: number, originRateBps: number, opts: TestbedOptions = {}): Promise<Testbed> {
  if (!Number.isInteger(peerCount) || peerCount < 1 || peerCount > MAX_PEERS) throw new Error(`peers: 1..${MAX_PEERS}`);
  await cleanupLeftovers();
  const wantCc = opts.congestionControl ?? "cubic";
  let restoreAllowed: string | undefined;
  let ccSysctl: string[] = [];
  if (wantCc !== "inherit") {
    try {
      restoreAllowed = allowCongestionControl(wantCc);
      ccSysctl = [`net.ipv4.tcp_congestion_control=${wantCc}`];
    } catch (e) {
      process.stderr.write(`testbed: cannot allow TCP congestion control ${wantCc} (${(e as Error).message}); hosts keep the machine's default\n`);
    }
  }
  let congestionControl = readFileSync(HOST_CC, "utf8").trim();
  // Refuse if anything else on this machine already uses the testbed's range.
  const addrs = await runCommand("ip", ["-o", "-4", "addr", "show"], T);
  for (const line of addrs.stdout.split("\n")) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(10\.214\.\d+\.\d+)\//.exec(line);
    if (m) throw new Error(`${m[1]} already has ${m[2]} in ${SUBNET}; the testbed needs that range to itself`);
  }
  const origin = host("o", ORIGIN_IP);
  const peers = Array.from({ length: peerCount }, (_, i) => host(`p${i}`, peerIp(i)));
  const all = [origin, ...peers];
  const tb: Testbed = {
    origin,
    peers,
    peerRateBps,
    originRateBps,
    counters() {
      const m = new Map<string, LinkBytes>();
      for (const h of all) {
        const rd = (what: string) => Number(readFileSync(`/sys/class/net/${h.brIf}/statistics/${what}`, "utf8"));
        // The bridge-side end receives what the host transmits.
        m.set(h.id, { tx: rd("rx_bytes"), rx: rd("tx_bytes"), txPackets: rd("rx_packets"), rxPackets: rd("tx_packets") });
      }
      return m;
    },
    async qdiscStats() {
      const out: string[] = [];
      for (const h of all) {
        const down = await runCommand("tc", ["-s", "qdisc", "show", "dev", h.brIf, "root"], T);
        const up = await runCommand("tc", ["-n", h.ns, "-s", "qdisc", "show", "dev", "eth0", "root"], T);
        out.push(`${h.id} up: ${up.stdout.replace(/\s+/g, " ").trim()}`, `${h.id} down: ${down.stdout.replace(/\s+/g, " ").trim()}`);
      }
      return out.join("\n");
    },
    get congestionControl() {
      return congestionControl;
    },
    async tcpCounters() {
      const m = new Map<string, TcpCounters>();
      await Promise.all(
        all.map(async (h) => {
          const r = await runCommand("ip", ["netns", "exec", h.ns, "cat", "/proc/net/snmp"], T);
          const c = r.code === 0 ? parseTcpSnmp(r.stdout) : undefined;
          if (c) m.set(h.id, c);
        }),
      );
      return m;
    },
    async teardown() {
      await cleanupLeftovers();
      if (restoreAllowed !== undefined) writeFileSync(ALLOWED_CC, restoreAllowed);
      restoreAllowed = undefined;
    },
  };
  try {
    await mustRun("ip", ["link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"], T);
    disableIpv6(BRIDGE);
    await mustRun("ip", ["link", "set", BRIDGE, "up"], T);
    for (const h of all) {
      const rate = h === origin ? originRateBps : peerRateBps;
      await mustRun("ip", ["netns", "add", h.ns], T);
      await mustRun("ip", ["netns", "exec", h.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], T);
      if (ccSysctl.length > 0) {
        const r = await runCommand("ip", ["netns", "exec", h.ns, "sysctl", "-qw", ...ccSysctl], T);
        if (r.code !== 0) {
          process.stderr.write(`testbed: cannot set TCP congestion control ${wantCc} in ${h.ns} (${r.stderr.trim()}); hosts keep the machine's default\n`);
          ccSysctl = [];
        }
      }
      await mustRun("ip", ["link", "add", h.brIf, "type", "veth", "peer", "name", "eth0", "netns", h.ns], T);
      disableIpv6(h.brIf);
      await mustRun("ip", ["link", "set", h.brIf, "master", BRIDGE, "up"], T);
      await mustRun("ip", ["-n", h.ns, "addr", "add", `${h.ip}/16`, "dev", "eth0"], T);
      await mustRun("ip", ["-n", h.ns, "link", "set", "lo", "up"], T);
      await mustRun("ip", ["-n", h.ns, "link", "set", "eth0", "up"], T);
      // download: the bridge-side end's egress; upload: the host's eth0 egress
      await mustRun("tc", ["qdisc", "add", "dev", h.brIf, ...tbf(rate)], T);
      await mustRun("tc", ["-n", h.ns, "qdisc", "add", "dev", "eth0", ...tbf(rate)], T);
    }
    if (ccSysctl.length > 0) congestionControl = wantCc;
    // Bounded wait for every link to come up.
    for (let i = 0; i < 100; i++) {
      const r = await runCommand("ip", ["-o", "link", "show", "master", BRIDGE], T);
      const up = r.stdout.split("\n").filter((l) => /[<,]LOWER_UP[,>]/.test(l) && /state UP/.test(l)).length;
      if (up === all.length) break;
      if (i === 99) throw new Error(`only ${up} of ${all.length} testbed links came up`);
      await sleep(50);
    }
  } catch (e) {
    await tb.teardown().catch(() => undefined);
    throw e;
  }
  return tb;
}
