// An in-process scheduler with mutual TLS, clients with role certificates,
// and one AnnouncePeer stream driven by a test.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import { AsyncQueue } from "../../src/common/async-queue.js";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import type { Role } from "../../src/common/tls/roles.js";
import { createRpcTransport, fromConnectError, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Scheduler, type SchedulerOptions } from "../../src/scheduler/scheduler.js";
import type { CertFiles, Pki } from "./pki.js";

export type SchedClient = Client<typeof schedulerv1.SchedulerService>;
type Req = schedulerv1.AnnouncePeerRequest["request"];
type Resp = schedulerv1.AnnouncePeerResponse;
type RespValue<C> = Extract<Resp["response"], { case: C }> extends { value: infer V } ? V : never;

// Task geometry within the scheduler's bounds.
export const PL = 512n * 1024n;
export const LEN = 10n * PL;

let taskSeq = 0;
export const newTaskId = () => createHash("sha256").update(`zt-task-${process.pid}-${taskSeq++}`).digest("hex");

export interface Started {
  sched: Scheduler;
  port: number;
  // A client with a certificate of `role`/`name` (issued by the pki).
  client(role: Role, name: string, opts?: { ips?: string[]; dns?: string[] }): Promise<SchedClient>;
}

// cleanups: where the test file collects what to close at its end.
export async function startTlsScheduler(
  pki: Pki | undefined,
  cleanups: (() => unknown)[],
  flags: Record<string, unknown> = {},
  opts: Omit<SchedulerOptions, "config" | "logger"> = {},
): Promise<Started> {
  const tls = pki ? await pki.issue("scheduler", "sched") : undefined;
  const tlsFlags = tls ? { "tls.ca": tls.ca, "tls.cert": tls.cert, "tls.key": tls.key } : {};
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0", seedWait: 5000, ...tlsFlags, ...flags } });
  const sched = new Scheduler({ config, logger: createLogger("silent"), ...opts });
  await sched.start();
  cleanups.push(() => sched.close());
  const port = sched.address.port;
  return {
    sched,
    port,
    client: async (role, name, o) => {
      if (!pki) return createClient(schedulerv1.SchedulerService, createRpcTransport(`http://127.0.0.1:${port}`));
      return clientWith(await pki.issue(role, name, o), port, cleanups);
    },
  };
}

export function identityOf(files: CertFiles): TlsIdentity {
  return TlsIdentity.load(files, { watch: false });
}

export function clientWith(files: CertFiles, port: number, cleanups: (() => unknown)[]): SchedClient {
  const identity = identityOf(files);
  cleanups.push(() => identity.close());
  return createClient(
    schedulerv1.SchedulerService,
    createRpcTransport(`http://127.0.0.1:${port}`, { identity, server: { roles: ["scheduler"], verifyHostname: true } }),
  );
}

export function hostMsg(id: string, hostname: string, o: { ip?: string; seed?: boolean; apiPort?: number } = {}): schedulerv1.Host {
  return create(schedulerv1.HostSchema, {
    id,
    hostname,
    ip: o.ip ?? "127.0.0.1",
    uploadPort: 4000,
    apiPort: o.apiPort ?? 0,
    type: o.seed ? HostType.SEED : HostType.NORMAL,
  });
}

// The DF_ERR_ code of a rejected call.
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return fromConnectError(e).code;
  }
  return "ok";
}

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

  register(url = "http://origin.test/file"): void {
    this.send({ case: "registerPeer", value: create(schedulerv1.RegisterPeerRequestSchema, { download: { url, headers: { authorization: "secret" } } }) });
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

  // The DF_ERR_ code the stream ended with.
  async error(ms = 3000): Promise<string> {
    try {
      const r = await this.next(ms);
      throw new Error(`expected the stream to fail, got ${r.response.case}`);
    } catch (e) {
      if (e instanceof Error && (e.message.startsWith("timeout") || e.message.startsWith("expected the stream"))) throw e;
      return fromConnectError(ConnectError.from(e)).code;
    }
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
}
