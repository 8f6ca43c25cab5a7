// A LAN of test hosts: network namespaces on one bridge. The bridge lives in a
// namespace of its own (so the root namespace's firewall and bridge-netfilter
// settings never see the traffic); the root namespace joins it with one veth
// (the test process reaches every host, e.g. to push an image); every host is
// a namespace whose eth0 has one address of the LAN's /24. Only 10.213.X.0/24
// addresses, nothing routed beyond it. Names are short: `<prefix>-<name>`
// must fit an interface name (15 bytes).
import { killNetnsProcesses, mustRun, netnsNames, runCommand } from "./netns.js";
import type { Cleanup } from "./procs.js";

export interface LanHost {
  readonly name: string;
  readonly ip: string;
  // /var/run/netns/<name>: for `ctr run --with-ns network:<path>`.
  readonly netnsPath: string;
}

export interface Lan {
  // "10.213.X." : hosts get <subnet><n>.
  readonly subnet: string;
  // The root namespace's address on the LAN.
  readonly rootIp: string;
  readonly hosts: LanHost[];
  addHost(name: string, hostNumber: number): Promise<LanHost>;
  // Kills what still runs in the hosts, deletes them and the bridge. Idempotent.
  destroy(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function deleteNetns(name: string): Promise<void> {
  await killNetnsProcesses(name);
  await runCommand("ip", ["netns", "del", name], { timeoutMs: 10_000 });
}

// Deletes every namespace of this prefix (the leftovers of a crashed run
// too) and waits, bounded, until the root namespace's veth is gone.
async function cleanupLan(prefix: string): Promise<void> {
  for (const n of await netnsNames()) if (n.startsWith(`${prefix}-`)) await deleteNetns(n);
  const rootIf = `${prefix}-root`;
  await runCommand("ip", ["link", "del", "dev", rootIf], { timeoutMs: 10_000 });
  for (let i = 0; i < 100; i++) {
    const r = await runCommand("ip", ["-o", "link", "show", "dev", rootIf], { timeoutMs: 10_000 });
    if (r.code !== 0) return;
    await sleep(50);
  }
}

// prefix: 1-6 of [a-z0-9]; third: X of 10.213.X.0/24.
export async function createLan(prefix: string, third: number, t?: Cleanup): Promise<Lan> {
  if (!/^[a-z0-9]{1,6}$/.test(prefix)) throw new Error(`bad LAN prefix ${JSON.stringify(prefix)}`);
  if (!Number.isInteger(third) || third < 0 || third > 255) throw new Error(`bad subnet 10.213.${third}.0/24`);
  const subnet = `10.213.${third}.`;
  const sw = `${prefix}-sw`;
  await cleanupLan(prefix);
  const addrs = await runCommand("ip", ["-o", "-4", "addr", "show"], { timeoutMs: 10_000 });
  if (addrs.stdout.includes(` ${subnet}`)) throw new Error(`an interface already has an address in ${subnet}0/24`);
  const ip = (args: string[]) => mustRun("ip", args, { timeoutMs: 10_000 });
  const hosts: LanHost[] = [];
  let n = 0;
  const lan: Lan = {
    subnet,
    rootIp: `${subnet}1`,
    hosts,
    async addHost(name, hostNumber) {
      if (!/^[a-z0-9]{1,6}$/.test(name) || hostNumber < 2 || hostNumber > 254) throw new Error(`bad LAN host ${name} ${hostNumber}`);
      const ns = `${prefix}-${name}`;
      const port = `${prefix}p${n++}`;
      await ip(["netns", "add", ns]);
      await ip(["link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      await ip(["link", "set", port, "netns", sw]);
      await ip(["-n", sw, "link", "set", port, "master", "br0", "up"]);
      await ip(["-n", ns, "link", "set", "lo", "up"]);
      await ip(["-n", ns, "addr", "add", `${subnet}${hostNumber}/24`, "dev", "eth0"]);
      await ip(["-n", ns, "link", "set", "eth0", "up"]);
      const h = { name: ns, ip: `${subnet}${hostNumber}`, netnsPath: `/var/run/netns/${ns}` };
      hosts.push(h);
      return h;
    },
    destroy: () => cleanupLan(prefix),
  };
  try {
    await ip(["netns", "add", sw]);
    await ip(["-n", sw, "link", "add", "br0", "type", "bridge"]);
    await ip(["-n", sw, "link", "set", "br0", "up"]);
    await ip(["link", "add", `${prefix}-root`, "type", "veth", "peer", "name", "up0", "netns", sw]);
    await ip(["-n", sw, "link", "set", "up0", "master", "br0", "up"]);
    await ip(["addr", "add", `${lan.rootIp}/24`, "dev", `${prefix}-root`]);
    await ip(["link", "set", `${prefix}-root`, "up"]);
  } catch (e) {
    await cleanupLan(prefix).catch(() => undefined);
    throw e;
  }
  t?.after(() => lan.destroy());
  return lan;
}
