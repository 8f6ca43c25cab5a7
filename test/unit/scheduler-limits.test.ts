// What the scheduler holds is bounded for every caller, loopback and Unix
// socket ones (not counted per registrant) included: hosts, tasks and peers
// in all, peers per host; an IPv6 registrant is its /64; and its HTTP/2
// listener caps streams per connection and connections per address.
import { test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { once } from "node:events";
import { registrantOf } from "../../src/scheduler/access.js";
import { codeOf, fileScope, hostMsg, LEN, newTaskId, PL, startTlsScheduler, type SchedClient } from "../helpers/scheduler-tls.js";

const { cleanups } = fileScope("df-sched-limits-");

const cached = (taskId: string, peerId: string) => ({ taskId, peerId, contentLength: LEN, pieceLength: PL, totalPieces: 10 });
const announce = (c: SchedClient, id: string) => c.announceHost({ host: hostMsg(id, id), intervalSeconds: 0 });

test("totals and peers per host bound a loopback caller, whom no per-registrant cap counts", { timeout: 20_000 }, async () => {
  const s = await startTlsScheduler(undefined, cleanups, { "limits.maxHosts": 3, "limits.peersPerHost": 5, "limits.maxTasks": 8, "limits.maxPeers": 9 });
  const c = await s.client("peer", "any");
  for (const h of ["h1", "h2", "h3"]) await announce(c, h);
  assert.equal(await codeOf(announce(c, "h4")), "DF_ERR_LIMIT_EXCEEDED", "a fourth host");
  assert.equal((await announce(c, "h1")).newHost, false, "known hosts keep announcing");

  const six = Array.from({ length: 6 }, (_, i) => cached(newTaskId(), `p-six-${i}`));
  assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h1", tasks: six })), "DF_ERR_LIMIT_EXCEEDED", "six peers on one host");
  assert.equal(s.sched.peerSnapshot("p-six-0"), undefined, "nothing of a refused call is taken");
  await c.announceCachedTasks({ hostId: "h1", tasks: six.slice(0, 5) });
  const three = Array.from({ length: 3 }, (_, i) => cached(newTaskId(), `p-three-${i}`));
  await c.announceCachedTasks({ hostId: "h2", tasks: three });
  assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h3", tasks: [cached(newTaskId(), "p-ninth-task")] })), "DF_ERR_LIMIT_EXCEEDED", "a ninth task");
  // An existing task takes no new room in the task table; the peer does.
  await c.announceCachedTasks({ hostId: "h3", tasks: [cached(six[0]!.taskId, "p-h3-a")] });
  assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h3", tasks: [cached(six[1]!.taskId, "p-h3-b")] })), "DF_ERR_LIMIT_EXCEEDED", "a tenth peer");
});

test("without TLS a registrant is its remote address, an IPv6 one by its /64", () => {
  const key = (remoteAddress: string) => registrantOf({ kind: "open", remoteAddress }, "AnnounceHost").key;
  assert.equal(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:0:0:9"));
  assert.notEqual(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
  assert.equal(key("::ffff:192.0.2.7"), "address/192.0.2.7");
  assert.equal(key("127.0.0.1"), undefined, "loopback is not counted");
});

// The server's SETTINGS, or undefined when it closed the connection first.
async function settingsOf(port: number, localAddress = "127.0.0.1"): Promise<http2.Settings | undefined> {
  const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => net.connect({ host: "127.0.0.1", port, localAddress }) });
  session.on("error", () => {});
  cleanups.push(() => session.destroy());
  const got = await Promise.race([once(session, "remoteSettings").then(([s]) => s as http2.Settings), once(session, "close").then(() => undefined)]);
  return got;
}

test("HTTP/2: streams per connection announced in SETTINGS; connections per address capped", { timeout: 20_000 }, async () => {
  const defaults = await startTlsScheduler(undefined, cleanups);
  assert.equal((await settingsOf(defaults.port))?.maxConcurrentStreams, 1024, "the default");
  const s = await startTlsScheduler(undefined, cleanups, { "limits.streamsPerConnection": 4, "limits.connectionsPerAddress": 2 });
  assert.equal((await settingsOf(s.port))?.maxConcurrentStreams, 4);
  assert.ok(await settingsOf(s.port), "a second connection");
  assert.equal(await settingsOf(s.port), undefined, "a third from the same address is closed");
  assert.equal((await settingsOf(s.port, "127.0.0.2"))?.maxConcurrentStreams, 4, "another address is served");
});
