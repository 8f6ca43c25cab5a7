// LeaveTasks: a daemon that evicted or deleted tasks stops being offered as
// their parent; a peer of the same task still downloading is left alone; bad
// input is refused.
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

test("LeaveTasks removes the host's finished peers of those tasks, and only those", async (t) => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0" } });
  const sched = new Scheduler({ config, logger: createLogger("silent") });
  await sched.start();
  t.after(() => sched.close());
  const client = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://127.0.0.1:${sched.address.port}`));
  for (const h of ["h1", "h2"]) {
    await client.announceHost({ host: { id: h, hostname: h, ip: "127.0.0.1", uploadPort: 4000, type: HostType.NORMAL }, intervalSeconds: 60 });
  }
  const task = id("t1");
  const cached = (peerId: string) => ({ taskId: task, peerId, contentLength: 1024n, pieceLength: 512n * 1024n, totalPieces: 1 });
  await client.announceCachedTasks({ hostId: "h1", tasks: [cached("p1")] });
  await client.announceCachedTasks({ hostId: "h2", tasks: [cached("p2")] });
  const holders = async () => (await client.listTaskPeers({ taskId: task })).peers.map((p) => p.hostId).sort();
  assert.deepEqual(await holders(), ["h1", "h2"]);

  // Another host cannot make h2's peer leave.
  assert.equal((await client.leaveTasks({ hostId: "h1", tasks: [{ taskId: task, peerId: "p2" }] })).removed, 0);
  assert.equal((await client.leaveTasks({ hostId: "h1", tasks: [{ taskId: task, peerId: "p1" }] })).removed, 1);
  assert.deepEqual(await holders(), ["h2"]);

  // A peer whose announce stream is open (downloading again) stays.
  const task2 = id("t2");
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
  reqs.push(
    create(schedulerv1.AnnouncePeerRequestSchema, {
      hostId: "h1",
      taskId: task2,
      peerId: "p3",
      request: { case: "registerPeer", value: { download: { url: "http://o/x" } } },
    }),
  );
  const first = stream.next();
  first.catch(() => undefined);
  for (let i = 0; (await client.listTaskPeers({ taskId: task2 })).peers.length === 0; i++) {
    assert.ok(i < 100, "the peer should register");
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((await client.leaveTasks({ hostId: "h1", tasks: [{ taskId: task2, peerId: "p3" }] })).removed, 0);
  assert.equal((await client.listTaskPeers({ taskId: task2 })).peers.length, 1);

  const bad = await client.leaveTasks({ hostId: "h1", tasks: [{ taskId: "../x", peerId: "p1" }] }).catch((e: unknown) => fromConnectError(e));
  assert.equal((bad as { code?: string }).code, "DF_ERR_INVALID_REQUEST");
  reqs.close();
});
