// The scheduler's answers for the manager's extender: ListTaskHolders (hosts
// holding each of several tasks whole, host names once, bounded) and
// ListRegistries (the registries of the blobs its daemons fetched: origins
// only, Docker Hub's names folded as task IDs fold them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { createRpcTransport, fromConnectError, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Scheduler } from "../../src/scheduler/index.js";
import { TestPeer } from "../helpers/announce-peer.js";

const id = (s: string) => createHash("sha256").update(s).digest("hex");

test("ListTaskHolders and ListRegistries", async (t) => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0" } });
  const sched = new Scheduler({ config, logger: createLogger("silent") });
  await sched.start();
  // Streams end before the scheduler closes: cleanups run last-in first-out.
  const cleanups: (() => unknown)[] = [() => sched.close()];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  const client = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://127.0.0.1:${sched.address.port}`));
  for (const h of ["h1", "h2", "h3"]) {
    await client.announceHost({ host: { id: h, hostname: `node-${h}`, ip: "127.0.0.1", uploadPort: 4000, type: HostType.NORMAL }, intervalSeconds: 60 });
  }
  const [t1, t2, t3] = [id("t1"), id("t2"), id("t3")];
  const cached = (taskId: string, peerId: string) => ({ taskId, peerId, contentLength: 1024n, pieceLength: 512n * 1024n, totalPieces: 1 });
  await client.announceCachedTasks({ hostId: "h1", tasks: [cached(t1, "p1")] });
  await client.announceCachedTasks({ hostId: "h2", tasks: [cached(t1, "p2"), cached(t2, "p3")] });

  // h3 starts fetching a blob of Docker Hub (through index.docker.io): a
  // content-addressed task t3 it holds nothing of yet.
  const blobUrl = `https://index.docker.io/v2/library/nginx/blobs/sha256:${"a".repeat(64)}?X-Sig=secret`;
  new TestPeer(client, cleanups, "h3", t3, "p4").register({ url: blobUrl, digest: `sha256:${"a".repeat(64)}` });
  // And a plain file (not content-addressed): its origin is no registry.
  const t4 = id("t4");
  new TestPeer(client, cleanups, "h3", t4, "p5").register({ url: "https://files.example/big.iso" });
  for (let i = 0; (await client.listTaskPeers({ taskId: t3 })).peers.length + (await client.listTaskPeers({ taskId: t4 })).peers.length < 2; i++) {
    assert.ok(i < 100, "the peer should register");
    await new Promise((r) => setTimeout(r, 20));
  }

  const r = await client.listTaskHolders({ taskIds: [t1, t2, t3, id("unknown")] });
  const named = r.tasks.map((x) => [x.taskId, x.hosts.map((i) => r.hostnames[i]).sort()]);
  assert.deepEqual(named, [
    [t1, ["node-h1", "node-h2"]],
    [t2, ["node-h2"]],
    [t3, []], // running, no piece: not a holder
  ]);
  assert.equal(new Set(r.hostnames).size, r.hostnames.length, "each host name once");

  // Only content-addressed tasks' registries, as origins (no path, no query).
  assert.deepEqual((await client.listRegistries({})).registries, ["https://registry-1.docker.io"]);

  const tooMany = Array.from({ length: 51 }, (_, i) => id(`x${i}`));
  for (const taskIds of [tooMany, ["../x"]]) {
    const bad = await client.listTaskHolders({ taskIds }).catch((e: unknown) => fromConnectError(e));
    assert.equal((bad as { code?: string }).code, "DF_ERR_INVALID_REQUEST");
  }
  assert.equal((await client.listTaskHolders({ taskIds: tooMany.slice(0, 50) })).tasks.length, 0);
});
