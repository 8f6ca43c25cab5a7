// The scheduler's answers for the manager's extender: ListTaskHolders (hosts
// holding each of several tasks whole, host names once, bounded) and
// ListRegistries (the registries of the blobs its daemons fetched: origins
// only, Docker Hub's names folded as task IDs fold them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { createRpcTransport, fromConnectError, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Scheduler } from "../../src/scheduler/index.js";

const id = (s: string) => createHash("sha256").update(s).digest("hex");

test("ListTaskHolders and ListRegistries", async (t) => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0" } });
  const sched = new Scheduler({ config, logger: createLogger("silent") });
  await sched.start();
  t.after(() => sched.close());
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
  const reqs = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
  const ctrl = new AbortController();
  t.after(() => ctrl.abort());
  const stream = client
    .announcePeer(
      (async function* () {
        yield* reqs;
      })(),
      { signal: ctrl.signal },
    )
    [Symbol.asyncIterator]();
  const blobUrl = `https://index.docker.io/v2/library/nginx/blobs/sha256:${"a".repeat(64)}?X-Sig=secret`;
  reqs.push(
    create(schedulerv1.AnnouncePeerRequestSchema, {
      hostId: "h3",
      taskId: t3,
      peerId: "p4",
      request: { case: "registerPeer", value: { download: { url: blobUrl, digest: `sha256:${"a".repeat(64)}`, digestTaskId: true } } },
    }),
  );
  stream.next().catch(() => undefined);
  // And a plain file (not content-addressed): its origin is no registry.
  const reqs2 = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
  const stream2 = client
    .announcePeer(
      (async function* () {
        yield* reqs2;
      })(),
      { signal: ctrl.signal },
    )
    [Symbol.asyncIterator]();
  const t4 = id("t4");
  reqs2.push(
    create(schedulerv1.AnnouncePeerRequestSchema, {
      hostId: "h3",
      taskId: t4,
      peerId: "p5",
      request: { case: "registerPeer", value: { download: { url: "https://files.example/big.iso" } } },
    }),
  );
  stream2.next().catch(() => undefined);
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
  reqs.close();
  reqs2.close();
});
