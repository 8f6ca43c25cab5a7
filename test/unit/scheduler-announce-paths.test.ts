import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { fromConnectError, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Scheduler } from "../../src/scheduler/index.js";

// AnnouncePeer has two server paths: plain gRPC (what daemons send) is
// served by the fast path, everything else by Connect. Both must behave alike.

type SchedClient = Client<typeof schedulerv1.SchedulerService>;
type Req = schedulerv1.AnnouncePeerRequest["request"];

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let seq = 0;
const newTaskId = () => createHash("sha256").update(`paths-${process.pid}-${seq++}`).digest("hex");

async function startScheduler(): Promise<string> {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0", seedWait: 5000 } });
  const sched = new Scheduler({ config, logger: createLogger("silent") });
  await sched.start();
  cleanups.push(() => sched.close());
  return `http://127.0.0.1:${sched.address.port}`;
}

const transports: Record<string, (baseUrl: string) => Transport> = {
  "gRPC (fast path)": (baseUrl) => createGrpcTransport({ baseUrl }),
  "gRPC with a deadline (Connect)": (baseUrl) => createGrpcTransport({ baseUrl, defaultTimeoutMs: 30_000 }),
  "Connect protocol (Connect)": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" }),
};

// Sends `reqs`, half-closes (at once, or once the first response came), and
// collects every response and how it ended.
async function call(
  client: SchedClient,
  hostId: string,
  taskId: string,
  peerId: string,
  reqs: Req[],
  closeOnResponse = false,
): Promise<{ responses: schedulerv1.AnnouncePeerResponse[]; error: ConnectError | undefined }> {
  const q = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
  for (const request of reqs) q.push(create(schedulerv1.AnnouncePeerRequestSchema, { hostId, taskId, peerId, request }));
  if (!closeOnResponse) q.close();
  const source = (async function* () {
    yield* q;
  })();
  const responses: schedulerv1.AnnouncePeerResponse[] = [];
  try {
    for await (const r of client.announcePeer(source)) {
      responses.push(r);
      if (closeOnResponse) q.close();
    }
    return { responses, error: undefined };
  } catch (e) {
    return { responses, error: ConnectError.from(e) };
  }
}

const register = (): Req => ({ case: "registerPeer", value: create(schedulerv1.RegisterPeerRequestSchema, { download: { url: "http://origin.test/f" } }) });
const pieces = (...numbers: number[]): Req => ({
  case: "piecesFinished",
  value: create(schedulerv1.PiecesFinishedRequestSchema, { pieces: numbers.map((number) => ({ number, length: 100n })) }),
});

for (const [name, mk] of Object.entries(transports)) {
  test(`announce over ${name}: host keep-alive, decisions, batched pieces, finish, and rejected streams with our error code`, { timeout: 15_000 }, async () => {
    const base = await startScheduler();
    const client = createClient(schedulerv1.SchedulerService, mk(base));
    const announced = await client.announceHost({
      host: { id: "h1", hostname: "h1", ip: "127.0.0.1", uploadPort: 1, type: HostType.NORMAL },
      intervalSeconds: 0,
    });
    assert.equal(announced.batchedPieceReports, true);
    await client.announceHost({ host: { id: "h2", hostname: "h2", ip: "127.0.0.1", uploadPort: 1, type: HostType.NORMAL }, intervalSeconds: 0 });
    const again = await client.announceHost({ host: { id: "h2", hostname: "h2", ip: "127.0.0.1", uploadPort: 1, type: HostType.NORMAL }, intervalSeconds: 0 });
    assert.equal(again.newHost, false);
    const noIp = await client.announceHost({ host: { id: "h3", hostname: "h3", ip: "" }, intervalSeconds: 0 }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(noIp?.code, Code.InvalidArgument);
    assert.equal(fromConnectError(noIp).code, "DF_ERR_INVALID_REQUEST");
    const task = newTaskId();

    // First peer: to the origin; reports its pieces in batches and finishes.
    const first = await call(client, "h1", task, "p1", [
      register(),
      {
        case: "backToSourceStarted",
        value: create(schedulerv1.BackToSourceStartedRequestSchema, { contentLength: 4n * 512n * 1024n, pieceLength: 512n * 1024n, contentLengthKnown: true }),
      },
      { case: "pieceFinished", value: create(schedulerv1.PieceFinishedRequestSchema, { number: 0, length: 100n }) },
      pieces(1, 2, 3),
      {
        case: "backToSourceFinished",
        value: create(schedulerv1.BackToSourceFinishedRequestSchema, { contentLength: 4n * 512n * 1024n, pieceLength: 512n * 1024n, totalPieces: 4 }),
      },
    ]);
    assert.equal(first.error, undefined);
    assert.deepEqual(
      first.responses.map((r) => r.response.case),
      ["needBackToSource"],
    );
    const stat = await client.statTask({ taskId: task });
    assert.equal(stat.finishedPeerCount, 1);
    assert.equal(stat.task?.totalPieces, 4);

    // Second peer: the finished one is its parent, with every piece.
    const second = await call(client, "h2", task, "p2", [register()], true);
    assert.equal(second.error, undefined);
    assert.equal(second.responses[0]?.response.case, "normalTask");
    const parents = second.responses[0]!.response.value as schedulerv1.NormalTaskResponse;
    assert.deepEqual(
      parents.candidateParents.map((c) => [c.peerId, c.finishedPieces, c.finished]),
      [["p1", 4, true]],
    );

    // A host nobody announced: FailedPrecondition with DF_ERR_INVALID_REQUEST.
    const rejected = await call(client, "nobody", task, "p3", [register()]);
    assert.equal(rejected.error?.code, Code.FailedPrecondition);
    assert.equal(fromConnectError(rejected.error).code, "DF_ERR_INVALID_REQUEST");
    assert.match(rejected.error!.rawMessage, /host nobody not announced/);

    // A bad first message, after a good stream: InvalidArgument.
    const bad = await call(client, "h1", task, "p4", [{ case: "pieceFinished", value: create(schedulerv1.PieceFinishedRequestSchema, { number: 0 }) }]);
    assert.equal(bad.error?.code, Code.InvalidArgument);
    assert.equal(fromConnectError(bad.error).code, "DF_ERR_INVALID_REQUEST");
  });
}
