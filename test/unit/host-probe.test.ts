// The scheduler's own check of a host its children report failing: a child
// cannot get a live host removed (however often it reports), a burst of
// reports costs one probe plus one at the end of the gap, and a dead host is
// removed once.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { createLogger } from "../../src/common/logger.js";
import { Host } from "../../src/scheduler/resources/host-manager.js";
import { connectProbe, HostProbes } from "../../src/scheduler/scheduling/host-probe.js";
import { until } from "../helpers/announce-peer.js";

function setup(alive: boolean) {
  const host = new Host("h1");
  host.ip = "127.0.0.1";
  host.uploadPort = 1;
  const hosts = new Map([[host.id, host]]);
  const probed: string[] = [];
  const dead: string[] = [];
  const probes = new HostProbes({
    probe: async (h) => {
      probed.push(h.id);
      return alive;
    },
    now: () => Date.now(),
    log: createLogger("silent"),
    dead: (h) => {
      dead.push(h.id);
      hosts.delete(h.id);
    },
    lookup: (id) => hosts.get(id),
  });
  return { host, hosts, probed, dead, probes };
}

test("a live host stays, whatever its children say; a burst of reports is two probes", async () => {
  const { probed, dead, probes, hosts } = setup(true);
  for (let i = 0; i < 50; i++) probes.suspect("h1");
  await until(() => probed.length === 2);
  assert.deepEqual(dead, []);
  assert.ok(hosts.has("h1"));
  // Nothing more was asked after the burst.
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(probed.length, 2);
});

test("a dead host is removed once; reports of unknown hosts probe nothing", async () => {
  const { probed, dead, probes } = setup(false);
  probes.suspect("nobody");
  probes.suspect("h1");
  probes.suspect("h1");
  await until(() => dead.length === 1);
  assert.deepEqual(probed, ["h1"]);
  probes.suspect("h1");
  assert.deepEqual(dead, ["h1"]);
});

test("the connect probe: a listener is alive, a closed port is not", async () => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const host = new Host("h");
  host.ip = "127.0.0.1";
  host.uploadPort = port;
  assert.equal(await connectProbe(host), true);
  await new Promise<void>((r) => server.close(() => r()));
  assert.equal(await connectProbe(host), false);
});
