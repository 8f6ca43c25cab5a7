// Peers assembled in this process from the daemon's own parts (task store,
// upload server, download manager), driven by a scripted stand-in for the
// scheduler: for data-plane tests that need to choose exactly who is sent to
// the origin (with or without a grant) and who is whose parent.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createLogger } from "../../src/common/logger.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { DamselflyError } from "../../src/common/errors.js";
import { DownloadSchema, downloadTaskId, HostType, schedulerv1, toErrorDetail, type Download } from "../../src/protocol/index.js";
import { encodeRecord, signGrant } from "../../src/protocol/trust.js";
import { Storage } from "../../src/peer/storage/storage.js";
import type { LocalTask, MakeRoom } from "../../src/peer/storage/local-task.js";
import { UploadServer } from "../../src/peer/upload/upload-server.js";
import { DownloadManager } from "../../src/peer/download-manager.js";
import { HttpSource } from "../../src/peer/source/http-source.js";
import { RateLimits } from "../../src/peer/rate-limits.js";
import { peerIdOf } from "../../src/peer/download/peer-id.js";
import type { AnnounceSession, SchedulerLink, SessionHandlers } from "../../src/peer/download/scheduler-link.js";
import type { CertFiles } from "./pki.js";
import type { Cleanup } from "./procs.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];
type Res = schedulerv1.AnnouncePeerResponse;

export const NO_LIMITS = { totalDownloadRateLimit: 0, totalUploadRateLimit: 0, backToSourceRateLimit: 0, perTaskRateLimit: 0 };

export function loadIdentity(files: CertFiles): TlsIdentity {
  return TlsIdentity.load(files, { watch: false });
}

// What a peer told the stand-in scheduler, in order.
export interface Sent {
  peer: string;
  taskId: string;
  req: Req;
}

// The scheduler as the peers see it: `decide` answers each message a peer
// sends on a task's announce stream (undefined: no answer).
export class ScriptedScheduler {
  readonly sent: Sent[] = [];

  constructor(private readonly decide: (peer: InProcPeer, taskId: string, req: Req) => Res | undefined) {}

  linkFor(peer: InProcPeer): SchedulerLink {
    const open = async (taskId: string, _peerId: string, h: SessionHandlers): Promise<AnnounceSession> => {
      let closed = false;
      const session = {
        scheduler: "scripted",
        send: (req: Req) => {
          if (closed) return;
          this.sent.push({ peer: peer.name, taskId, req });
          const res = this.decide(peer, taskId, req);
          if (res) setImmediate(() => !closed && h.onResponse(res));
        },
        close: () => {
          closed = true;
        },
      };
      session.send(h.register());
      return session;
    };
    return { open, announceCached: () => undefined, leaveTasks: async () => undefined } as unknown as SchedulerLink;
  }

  // Reschedule requests a peer sent, with their blocklists.
  blocklists(peer: string): string[][] {
    return this.sent
      .filter((s) => s.peer === peer && s.req.case === "reschedule")
      .map((s) => (s.req.value as schedulerv1.RescheduleRequest).blocklistParentIds);
  }
}

export interface ParentLike {
  peerId: string;
  hostId: string;
  port: number;
}

export function normalTask(parents: readonly ParentLike[], info?: { contentLength: number; pieceLength: number }): Res {
  return create(schedulerv1.AnnouncePeerResponseSchema, {
    response: {
      case: "normalTask",
      value: {
        candidateParents: parents.map((p) => ({ peerId: p.peerId, hostId: p.hostId, ip: "127.0.0.1", uploadPort: p.port, hostType: HostType.NORMAL })),
        ...(info
          ? { task: { contentLength: BigInt(info.contentLength), pieceLength: BigInt(info.pieceLength), totalPieces: 0, contentLengthKnown: true } }
          : {}),
      },
    },
  });
}

export function backToSource(grant?: Uint8Array): Res {
  return create(schedulerv1.AnnouncePeerResponseSchema, {
    response: { case: "needBackToSource", value: { description: "scripted", grant: grant ?? new Uint8Array() } },
  });
}

export function taskFailed(message: string): Res {
  return create(schedulerv1.AnnouncePeerResponseSchema, {
    response: { case: "taskFailed", value: { error: toErrorDetail(new DamselflyError("DF_ERR_NO_PARENT", message)) } },
  });
}

// A grant from `scheduler` naming `peer`'s current certificate as the
// task's fetcher (what a real scheduler sends with needBackToSource).
export function grantFor(scheduler: TlsIdentity, peer: InProcPeer, taskId: string): Uint8Array {
  const fp = peer.tls!.current().leaf.fingerprint256;
  return encodeRecord(signGrant(scheduler.current(), taskId, peer.peerIdOf(taskId), fp));
}

export interface InProcPeerOptions {
  name: string;
  // Reuse a data dir (a restart); default: a new temp dir removed at the end.
  dataDir?: string;
  tls?: TlsIdentity;
  scheduler?: ScriptedScheduler;
  maxContentLength?: number;
  makeRoom?: MakeRoom;
}

export interface InProcPeer extends ParentLike {
  readonly name: string;
  readonly dataDir: string;
  readonly storage: Storage;
  readonly upload: UploadServer;
  readonly tasks: DownloadManager;
  readonly tls: TlsIdentity | undefined;
  peerIdOf(taskId: string): string;
  // This peer as the parent of `taskId`.
  parent(taskId: string): ParentLike;
  // Downloads and waits for the task's end: resolves with the task when
  // done, rejects with the download's error.
  download(d: Download | string): Promise<LocalTask>;
  close(): Promise<void>;
}

export async function startPeer(t: Cleanup, o: InProcPeerOptions): Promise<InProcPeer> {
  const logger = createLogger((process.env.DF_TEST_LOG ?? "silent") as Parameters<typeof createLogger>[0]);
  const own = o.dataDir === undefined;
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), `df-inproc-${o.name}-`));
  const storage = new Storage(dataDir, logger);
  await storage.load();
  const upload = new UploadServer({ listen: "127.0.0.1:0", storage, logger, uploadConcurrency: 4, tls: o.tls });
  await upload.start();
  const source = new HttpSource({ timeoutMs: 10_000 });
  const hostId = `${o.name}-host`;
  const peer = {} as { -readonly [K in keyof InProcPeer]: InProcPeer[K] };
  const tasks = new DownloadManager({
    config: { piecesInFlight: 16, piecesPerParent: 4, pieceTimeout: 10_000, scheduleTimeout: 5_000, maxContentLength: o.maxContentLength ?? 1024 ** 4 },
    hostId,
    storage,
    source,
    scheduler: o.scheduler?.linkFor(peer as InProcPeer),
    logger,
    rateLimits: new RateLimits(NO_LIMITS),
    tls: o.tls,
    ...(o.makeRoom ? { makeRoom: o.makeRoom } : {}),
  });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await tasks.close();
    await upload.close();
    await source.close();
    await storage.close();
  };
  t.after(async () => {
    await close();
    if (own) rmSync(dataDir, { recursive: true, force: true });
  });
  Object.assign(peer, {
    name: o.name,
    dataDir,
    storage,
    upload,
    tasks,
    tls: o.tls,
    hostId,
    port: upload.address.port,
    peerId: "",
    peerIdOf: (taskId: string) => peerIdOf(hostId, taskId),
    parent: (taskId: string) => ({ peerId: peerIdOf(hostId, taskId), hostId, port: upload.address.port }),
    download: (d: Download | string) => downloadOn(tasks, typeof d === "string" ? create(DownloadSchema, { url: d }) : d),
    close,
  });
  return peer as InProcPeer;
}

async function downloadOn(tasks: DownloadManager, d: Download): Promise<LocalTask> {
  const { task } = await tasks.ensure(d, downloadTaskId(d));
  if (task.done) return task;
  return new Promise<LocalTask>((resolve, reject) => {
    const done = (): void => {
      task.off("failed", failed);
      resolve(task);
    };
    const failed = (err: DamselflyError): void => {
      task.off("done", done);
      reject(err);
    };
    task.once("done", done);
    task.once("failed", failed);
  });
}
