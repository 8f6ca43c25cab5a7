import { test, after } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { createLogger } from "../../src/common/logger.js";
import { createRpcServer, HostType, schedulerv1, type RpcServer } from "../../src/protocol/index.js";
import { SchedulerLink } from "../../src/peer/download/scheduler-link.js";

const TASK = "c".repeat(64);
// Handlers of a session whose answers the test does not look at.
const NO_ANSWERS = {
  register: () => ({ case: "registerPeer" as const, value: create(schedulerv1.RegisterPeerRequestSchema, { download: { url: "http://origin.test/f" } }) }),
  onResponse: () => undefined,
  onDetached: () => undefined,
};
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

// A scheduler that counts cached-task announcements and finish reports.
async function countingScheduler(): Promise<{ server: RpcServer; address: string; cached: number; finished: number }> {
  const s = { server: undefined as unknown as RpcServer, address: "", cached: 0, finished: 0 };
  s.server = await createRpcServer("127.0.0.1:0", (router) =>
    router.service(schedulerv1.SchedulerService, {
      announceHost: () => create(schedulerv1.AnnounceHostResponseSchema, { newHost: false }),
      leaveHost: () => create(schedulerv1.LeaveHostResponseSchema, {}),
      announceCachedTasks: (req) => {
        s.cached += req.tasks.length;
        return create(schedulerv1.AnnounceCachedTasksResponseSchema, {});
      },
      statTask: () => create(schedulerv1.StatTaskResponseSchema, {}),
      async *announcePeer(reqs) {
        const out = new AsyncQueue<schedulerv1.AnnouncePeerResponse>();
        void (async () => {
          for await (const r of reqs) if (r.request.case === "peerFinished") s.finished++;
          out.close();
        })();
        yield* out;
      },
    }),
  );
  s.address = `127.0.0.1:${s.server.address.port}`;
  cleanups.push(() => s.server.close());
  return s;
}

test("a finished peer is reported once to each scheduler: on its stream to one, as a cached task to the others", { timeout: 10_000 }, async () => {
  const a = await countingScheduler();
  const b = await countingScheduler();
  const link = new SchedulerLink({
    addresses: [a.address, b.address],
    host: create(schedulerv1.HostSchema, { id: "h1", hostname: "h1", ip: "127.0.0.1", uploadPort: 1, type: HostType.NORMAL }),
    logger: createLogger("silent"),
    connectTimeoutMs: 2_000,
    intervalMs: 60_000,
    cachedTasks: () => [],
    pieceBatch: false,
  });
  await link.start();
  cleanups.push(() => link.close());
  const s = await link.open(TASK, "peer-1", NO_ANSWERS);
  assert.ok(s);
  const told = s.scheduler === a.address ? a : b;
  const other = told === a ? b : a;
  s.send({ case: "peerFinished", value: create(schedulerv1.PeerFinishedRequestSchema, { contentLength: 10n, pieceLength: 10n, totalPieces: 1 }) });
  s.close();
  link.announceCached(
    create(schedulerv1.CachedTaskSchema, { taskId: TASK, peerId: "peer-1", contentLength: 10n, pieceLength: 10n, totalPieces: 1 }),
    s.scheduler,
  );
  for (let i = 0; i < 200 && (told.finished < 1 || other.cached < 1); i++) await sleep(10);
  assert.deepEqual([told.finished, told.cached], [1, 0]);
  assert.deepEqual([other.finished, other.cached], [0, 1]);
});
