import { create } from "@bufbuild/protobuf";
import type { DamselflyError } from "../../common/errors.js";
import { traceHeaders, type Span } from "../../common/trace.js";
import { schedulerv1, toErrorDetail, type Download } from "../../protocol/index.js";
import type { AnnounceSession, SchedulerLink } from "./scheduler-link.js";

type Req = schedulerv1.AnnouncePeerRequest["request"];

export interface TaskAnnouncerOptions {
  scheduler: SchedulerLink | undefined;
  taskId: string;
  peerId: string;
  // The download's span: the stream carries its trace context.
  span: Span;
}

export interface AnnouncerHandlers {
  // The registration as of now (sent again to every scheduler that takes
  // the download over).
  register: () => Req;
  onResponse: (r: schedulerv1.AnnouncePeerResponse) => void;
  // Another scheduler took the download over (its first died, hung or came back).
  onAttached: (scheduler: string) => void;
  // No scheduler holds the download now.
  onDetached: (e: DamselflyError) => void;
}

// One download's side of the conversation with its scheduler: the announce
// session and the messages this peer sends on it. The session survives its
// scheduler (scheduler-link.ts moves it); while no scheduler holds it,
// messages go nowhere.
export class TaskAnnouncer {
  private session: AnnounceSession | undefined;
  private detached = false;
  // An origin fetch in progress, said again to every scheduler that takes
  // the download over: it is a feed the new scheduler counts on.
  private sourceStarted: Req | undefined;

  constructor(private readonly o: TaskAnnouncerOptions) {}

  // A scheduler holds the download (or is taking it over).
  get connected(): boolean {
    return this.session !== undefined && !this.detached;
  }

  // The address of the scheduler the stream is open to.
  get scheduler(): string | undefined {
    return this.session?.scheduler;
  }

  // Opens the session (registering the peer); false when no scheduler takes it.
  async open(h: AnnouncerHandlers): Promise<boolean> {
    const o = this.o;
    const handlers = {
      register: h.register,
      onResponse: h.onResponse,
      onAttached: (scheduler: string) => {
        this.detached = false;
        if (this.sourceStarted) this.send(this.sourceStarted);
        h.onAttached(scheduler);
      },
      onDetached: (e: DamselflyError) => {
        this.detached = true;
        h.onDetached(e);
      },
    };
    this.session = o.scheduler ? await o.scheduler.open(o.taskId, o.peerId, handlers, traceHeaders(o.span)) : undefined;
    return this.session !== undefined;
  }

  private send(req: Req): void {
    this.session?.send(req);
  }

  static registration(download: Download, finishedPieces: number): Req {
    return { case: "registerPeer", value: create(schedulerv1.RegisterPeerRequestSchema, { download, finishedPieces }) };
  }

  downloadStarted(): void {
    this.send({ case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema) });
  }

  reschedule(blocklist: ReadonlySet<string>, description: string): void {
    this.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: [...blocklist], description }) });
  }

  // `parentId`: empty for a piece from the origin.
  pieceFinished(n: number, length: number, crc32: number, costMicros: bigint, parentId: string): void {
    this.send({
      case: "pieceFinished",
      value: create(schedulerv1.PieceFinishedRequestSchema, { number: n, length: BigInt(length), crc32, parentId, costMicros }),
    });
  }

  pieceFailed(n: number, parentId: string, e: DamselflyError): void {
    this.send({ case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: n, parentId, reason: e.message, temporary: e.temporary }) });
  }

  // A parent's connection broke (no one piece failed): the scheduler checks
  // its host rather than wait for the host's keep-alive to lapse.
  parentBroken(parentId: string, reason: string): void {
    this.send({ case: "pieceFailed", value: create(schedulerv1.PieceFailedRequestSchema, { number: 0, parentId, reason, temporary: true }) });
  }

  backToSourceStarted(contentLength: number, pieceLength: number, known: boolean): void {
    this.send(
      (this.sourceStarted = {
        case: "backToSourceStarted",
        value: create(schedulerv1.BackToSourceStartedRequestSchema, {
          contentLength: BigInt(Math.max(0, contentLength)),
          pieceLength: BigInt(pieceLength),
          contentLengthKnown: known,
        }),
      }),
    );
  }

  // `fromSource`: this peer went to the origin at some point.
  finished(fromSource: boolean, contentLength: number, pieceLength: number, totalPieces: number): void {
    const info = { contentLength: BigInt(contentLength), pieceLength: BigInt(pieceLength), totalPieces };
    if (fromSource) this.send({ case: "backToSourceFinished", value: create(schedulerv1.BackToSourceFinishedRequestSchema, info) });
    else this.send({ case: "peerFinished", value: create(schedulerv1.PeerFinishedRequestSchema, info) });
  }

  failed(fromSource: boolean, err: DamselflyError): void {
    const detail = { error: toErrorDetail(err) };
    if (fromSource) this.send({ case: "backToSourceFailed", value: create(schedulerv1.BackToSourceFailedRequestSchema, detail) });
    else this.send({ case: "peerFailed", value: create(schedulerv1.PeerFailedRequestSchema, detail) });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}
