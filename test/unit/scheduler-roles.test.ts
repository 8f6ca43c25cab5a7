// Who may call the scheduler, decided from the connection's certificate
// (src/scheduler/access.ts): the zero-trust role matrix, attack by attack.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { schedulerv1 } from "../../src/protocol/index.js";
import { isLoopbackHost, normalizeIp } from "../../src/common/address.js";
import { registrantOf } from "../../src/scheduler/access.js";
import { makePki, type Pki } from "../helpers/pki.js";
import { fileScope, codeOf, hostMsg, newTaskId, startTlsScheduler, TestPeer, type Started } from "../helpers/scheduler-tls.js";

const { cleanups, dir, pki: pkiFile } = fileScope("df-sched-roles-");

let pki: Pki;
let s: Started;
const ready = (async () => {
  pki = await pkiFile;
  s = await startTlsScheduler(pki, cleanups);
})();

const announce = async (c: Awaited<ReturnType<Started["client"]>>, host: schedulerv1.Host) => (await c.announceHost({ host, intervalSeconds: 0 })).newHost;

test("a client without a certificate, with another CA's certificate, or of another role is refused", { timeout: 30_000 }, async () => {
  await ready;
  const ca = readFileSync((await pki.issue("scheduler", "sched")).ca);
  const raw = (nodeOptions: object) =>
    createClient(schedulerv1.SchedulerService, createGrpcTransport({ baseUrl: `https://127.0.0.1:${s.port}`, nodeOptions: { ca, ...nodeOptions } }));
  // The handshake itself fails: nothing reaches a handler.
  await assert.rejects(raw({}).announceHost({ host: hostMsg("h-anon", "anon"), intervalSeconds: 0 }));
  const other = await makePki(join(dir, "other"));
  const stranger = await other.issue("peer", "stranger");
  await assert.rejects(
    raw({ cert: readFileSync(stranger.cert), key: readFileSync(stranger.key) }).announceHost({ host: hostMsg("h-anon", "stranger"), intervalSeconds: 0 }),
  );
  // Valid certificates of roles that may not announce.
  for (const role of ["client", "manager", "scheduler"] as const) {
    const c = await s.client(role, "anon");
    assert.equal(await codeOf(c.announceHost({ host: hostMsg("h-anon", "anon"), intervalSeconds: 0 })), "DF_ERR_PEER_ROLE", role);
    assert.equal(await codeOf(c.announceCachedTasks({ hostId: "h-anon", tasks: [] })), "DF_ERR_PEER_ROLE", role);
    assert.equal(await codeOf(c.leaveHost({ hostId: "h-anon" })), "DF_ERR_PEER_ROLE", role);
    assert.equal(await codeOf(c.leaveTasks({ hostId: "h-anon", tasks: [] })), "DF_ERR_PEER_ROLE", role);
    const p = new TestPeer(c, cleanups, "h-anon", newTaskId(), `p-${role}`);
    p.register();
    assert.equal(await p.error(), "DF_ERR_PEER_ROLE", role);
  }
  // Nothing was recorded: the name is still free for its owner.
  assert.equal(await announce(await s.client("peer", "anon"), hostMsg("h-anon", "anon")), true);
});

test("only a seed-peer certificate registers a seed host", { timeout: 15_000 }, async () => {
  await ready;
  const fake = await s.client("peer", "fake-seed");
  assert.equal(await codeOf(fake.announceHost({ host: hostMsg("h-fake-seed", "fake-seed", { seed: true }), intervalSeconds: 0 })), "DF_ERR_PEER_ROLE");
  // Nor turns its normal host into a seed later.
  assert.equal(await announce(fake, hostMsg("h-fake-seed", "fake-seed")), true);
  assert.equal(await codeOf(fake.announceHost({ host: hostMsg("h-fake-seed", "fake-seed", { seed: true }), intervalSeconds: 0 })), "DF_ERR_PEER_ROLE");
  const seed = await s.client("seed-peer", "seed-1");
  assert.equal(await announce(seed, hostMsg("h-seed-1", "seed-1", { seed: true })), true);
});

test("a host announces only itself: its certificate's name and its connection's address", { timeout: 15_000 }, async () => {
  await ready;
  const c = await s.client("peer", "node-a");
  assert.equal(await codeOf(c.announceHost({ host: hostMsg("h-imp", "node-b"), intervalSeconds: 0 })), "DF_ERR_PEER_ROLE");
  assert.equal(await codeOf(c.announceHost({ host: hostMsg("h-imp", "node-a", { ip: "127.0.0.2" }), intervalSeconds: 0 })), "DF_ERR_PEER_ROLE");
  // The same address in another spelling is the same address.
  assert.equal(await announce(c, hostMsg("h-node-a", "node-a", { ip: "::ffff:127.0.0.1" })), true);
});

test("a host ID belongs to the certificate that announced it; a rotated certificate keeps it", { timeout: 15_000 }, async () => {
  await ready;
  const owner = await s.client("peer", "owner");
  const thief = await s.client("peer", "thief");
  assert.equal(await announce(owner, hostMsg("h-owned", "owner")), true);
  // Another certificate cannot take it over, nor speak for it.
  assert.equal(await codeOf(thief.announceHost({ host: hostMsg("h-owned", "thief"), intervalSeconds: 0 })), "DF_ERR_PEER_ROLE");
  const task = newTaskId();
  assert.equal(
    await codeOf(thief.announceCachedTasks({ hostId: "h-owned", tasks: [{ taskId: task, peerId: "x", contentLength: 0n, pieceLength: 0n, totalPieces: 0 }] })),
    "DF_ERR_PEER_ROLE",
  );
  assert.equal(await codeOf(thief.leaveTasks({ hostId: "h-owned", tasks: [{ taskId: task, peerId: "x" }] })), "DF_ERR_PEER_ROLE");
  assert.equal(await codeOf(thief.leaveHost({ hostId: "h-owned" })), "DF_ERR_PEER_ROLE");
  const p = new TestPeer(thief, cleanups, "h-owned", task, "p-thief");
  p.register();
  assert.equal(await p.error(), "DF_ERR_PEER_ROLE");
  // The owner's certificate re-issued (another key, same role and name).
  const rotated = await s.client("peer", "owner", { dns: ["localhost", "rotated"] });
  assert.equal(await announce(rotated, hostMsg("h-owned", "owner")), false);
  assert.equal(await codeOf(rotated.leaveHost({ hostId: "h-owned" })), "ok");
});

test("a peer ID on another certificate's host cannot be taken over", { timeout: 15_000 }, async () => {
  await ready;
  const a = await s.client("peer", "pid-a");
  const b = await s.client("peer", "pid-b");
  await announce(a, hostMsg("h-pid-a", "pid-a"));
  await announce(b, hostMsg("h-pid-b", "pid-b"));
  const task = newTaskId();
  const pa = new TestPeer(a, cleanups, "h-pid-a", task, "shared-peer-id");
  pa.register();
  await pa.expect("needBackToSource");
  const pb = new TestPeer(b, cleanups, "h-pid-b", task, "shared-peer-id");
  pb.register();
  assert.equal(await pb.error(), "DF_ERR_PEER_ROLE");
  assert.equal(
    await codeOf(
      b.announceCachedTasks({ hostId: "h-pid-b", tasks: [{ taskId: task, peerId: "shared-peer-id", contentLength: 0n, pieceLength: 0n, totalPieces: 0 }] }),
    ),
    "DF_ERR_PEER_ROLE",
  );
  assert.equal(s.sched.peerSnapshot("shared-peer-id")?.streamOpen, true, "the owner's stream is untouched");
});

test("the manager's jobs need a manager certificate; any role may ask about a task", { timeout: 15_000 }, async () => {
  await ready;
  const peer = await s.client("peer", "jobs-peer");
  const manager = await s.client("manager", "manager");
  const client = await s.client("client", "cli");
  const taskId = newTaskId();
  assert.equal(await codeOf(peer.deleteTask({ taskId })), "DF_ERR_PEER_ROLE");
  assert.equal(await codeOf(peer.preheatTask({ download: { url: "http://origin.test/x" } })), "DF_ERR_PEER_ROLE");
  assert.equal(await codeOf(client.deleteTask({ taskId })), "DF_ERR_PEER_ROLE");
  assert.equal(await codeOf(manager.deleteTask({ taskId })), "ok");
  // No seed peer to preheat into: refused for that reason, not the role.
  assert.equal(await codeOf(manager.preheatTask({ download: { url: "http://origin.test/x" } })), "DF_ERR_NO_PARENT");
  assert.equal(await codeOf(client.statTask({ taskId })), "DF_ERR_TASK_NOT_FOUND");
  assert.equal((await client.listTaskPeers({ taskId })).peers.length, 0);
});

test("registrants: a certificate's role and name with TLS; a remote address without, loopback and Unix sockets not counted", () => {
  const id = { role: "peer" as const, name: "n1", fingerprint: "f" };
  assert.deepEqual(registrantOf({ kind: "tls", identity: id, remoteAddress: "::ffff:10.0.0.5" }, "x"), { key: "peer/n1", identity: id, remoteIp: "10.0.0.5" });
  assert.equal(registrantOf({ kind: "open", remoteAddress: "10.0.0.5" }, "x").key, "address/10.0.0.5");
  assert.equal(registrantOf({ kind: "open", remoteAddress: "::ffff:127.0.0.1" }, "x").key, undefined);
  assert.equal(registrantOf({ kind: "local" }, "x").key, undefined);
  assert.throws(() => registrantOf({ kind: "none", remoteAddress: "10.0.0.5" }, "x"), /DF_ERR_PEER_ROLE|certificate/);
  assert.throws(() => registrantOf({ kind: "tls", identity: { ...id, role: "client" }, remoteAddress: "10.0.0.5" }, "x"), /peer or seed-peer/);
  assert.equal(normalizeIp("::FFFF:10.0.0.1"), "10.0.0.1");
  assert.equal(normalizeIp("2001:db8:0:0:0:0:0:1"), "2001:db8::1");
  assert.ok(isLoopbackHost("127.0.0.2") && isLoopbackHost("::1") && !isLoopbackHost("10.0.0.1"));
});

test("without TLS nothing changes: any caller announces anything (a loopback cluster)", { timeout: 15_000 }, async () => {
  const open = await startTlsScheduler(undefined, cleanups);
  const c = await open.client("peer", "ignored");
  assert.equal(await announce(c, hostMsg("h-open", "any-name", { ip: "10.1.2.3", seed: true })), true);
  assert.equal(await announce(c, hostMsg("h-open", "another-name")), false);
  const p = new TestPeer(c, cleanups, "h-open", newTaskId(), "p-open");
  p.register();
  const n = await p.expect("needBackToSource");
  assert.equal(n.grant.length, 0, "no grant without TLS");
  assert.equal(await codeOf(c.deleteTask({ taskId: newTaskId() })), "ok");
  assert.equal(await codeOf(c.leaveHost({ hostId: "h-open" })), "ok");
});
