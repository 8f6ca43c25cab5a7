// One AnnouncePeer stream driven by a test, and what such tests share: task
// IDs, a geometry within the scheduler's bounds, bounded waits.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { ConnectError, type Client } from "@connectrpc/connect";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { fromConnectError, HostType, schedulerv1 } from "../../src/protocol/index.js";

type SchedClient = Client<typeof schedulerv1.SchedulerService>;
type Req = schedulerv1.AnnouncePeerRequest["request"];
type Resp = schedulerv1.AnnouncePeerResponse;
type RespValue<C> = Extract<Resp["response"], { case: C }> extends { value: infer V } ? V : never;

// Task geometry within the scheduler's bounds (512 KiB..64 MiB pieces).
export const PL = 512n * 1024n;
export const LEN = 10n * PL;

let taskSeq = 0;
export const newTaskId = () => createHash("sha256").update(`task-${process.pid}-${taskSeq++}`).digest("hex");

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// Polls a condition: the test goes on when the scheduler has acted.
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Announces a host on loopback named by its ID; a seed with an API port (so
// the scheduler can trigger it), announced once (no keep-alive interval).
export async function announceTestHost(client: SchedClient, id: string, seed = false): Promise<void> {
  await client.announceHost({
    host: { id, hostname: id, ip: "127.0.0.1", uploadPort: 4000, apiPort: seed ? 4001 : 0, type: seed ? HostType.SEED : HostType.NORMAL },
    intervalSeconds: 0,
  });
}

// One AnnouncePeer stream.
export class TestPeer {
  readonly reqs = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
  private readonly it: AsyncIterator<Resp>;
  private pending: Promise<IteratorResult<Resp>> | undefined;
  private readonly ctrl = new AbortController();

  constructor(
    client: SchedClient,
    cleanups: (() => unknown)[],
    readonly hostId: string,
    readonly taskId: string,
    readonly peerId: string,
  ) {
    // Connect clients need a request iterable with throw(): an async generator.
    const reqs = this.reqs;
    const source = (async function* () {
      yield* reqs;
    })();
    this.it = client.announcePeer(source, { signal: this.ctrl.signal })[Symbol.asyncIterator]();
    // Abort, not just half-close (a stream with unread responses would hold
    // the server's shutdown); the aborted read is expected, not an error.
    cleanups.push(() => {
      this.reqs.close();
      (this.pending ?? this.it.next()).catch(() => undefined);
      this.ctrl.abort();
    });
  }

  send(request: Req): void {
    this.reqs.push(create(schedulerv1.AnnouncePeerRequestSchema, { hostId: this.hostId, taskId: this.taskId, peerId: this.peerId, request }));
  }

  // `digest`: a digest-keyed download (an OCI blob, an imported task).
  register(opts: { disableBackToSource?: boolean; url?: string; finishedPieces?: number; digest?: string } = {}): void {
    const digest = opts.digest ? { digest: opts.digest, digestTaskId: true } : {};
    this.send({
      case: "registerPeer",
      value: create(schedulerv1.RegisterPeerRequestSchema, {
        download: {
          url: opts.url ?? "http://origin.test/file",
          headers: { authorization: "secret" },
          disableBackToSource: opts.disableBackToSource ?? false,
          ...digest,
        },
        finishedPieces: opts.finishedPieces ?? 0,
      }),
    });
  }

  async next(ms = 3000): Promise<Resp> {
    this.pending ??= this.it.next();
    const r = await withTimeout(this.pending, ms, `response for ${this.peerId}`);
    this.pending = undefined;
    if (r.done) throw new Error(`stream of ${this.peerId} ended`);
    return r.value;
  }

  async expect<C extends NonNullable<Resp["response"]["case"]>>(kind: C, ms = 3000): Promise<RespValue<C>> {
    const r = await this.next(ms);
    assert.equal(r.response.case, kind, `${this.peerId}: expected ${kind}, got ${r.response.case}`);
    return r.response.value as unknown as RespValue<C>;
  }

  async expectSilence(ms: number): Promise<void> {
    this.pending ??= this.it.next();
    const r = await Promise.race([this.pending.then((x) => x), new Promise<"quiet">((res) => setTimeout(() => res("quiet"), ms))]);
    assert.equal(r, "quiet", `${this.peerId}: expected no response, got ${JSON.stringify(r === "quiet" ? r : r.value?.response.case)}`);
  }

  // The error the stream ended with.
  async failure(ms = 3000): Promise<ConnectError> {
    try {
      const r = await this.next(ms);
      throw new Error(`expected the stream to fail, got ${r.response.case}`);
    } catch (e) {
      if (e instanceof Error && (e.message.startsWith("timeout") || e.message.startsWith("expected the stream"))) throw e;
      return ConnectError.from(e);
    }
  }

  // Its DF_ERR_ code.
  async error(ms = 3000): Promise<string> {
    return fromConnectError(await this.failure(ms)).code;
  }

  startSource(contentLength = LEN, pieceLength = PL): void {
    this.send({
      case: "backToSourceStarted",
      value: create(schedulerv1.BackToSourceStartedRequestSchema, { contentLength, pieceLength, contentLengthKnown: true }),
    });
  }

  finish(contentLength = LEN, pieceLength = PL, totalPieces = Number((contentLength + pieceLength - 1n) / pieceLength)): void {
    this.send({ case: "peerFinished", value: create(schedulerv1.PeerFinishedRequestSchema, { contentLength, pieceLength, totalPieces }) });
  }

  sourceFailed(status = 404): void {
    this.send({
      case: "backToSourceFailed",
      value: create(schedulerv1.BackToSourceFailedRequestSchema, {
        error: { code: "DF_ERR_SOURCE_STATUS", message: `origin said ${status}`, source: { statusCode: status, statusText: "Not Found" } },
      }),
    });
  }

  close(): void {
    this.reqs.close();
  }

  abort(): void {
    this.ctrl.abort();
  }
}
