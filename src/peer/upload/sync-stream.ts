import type http from "node:http";
import type { DamselflyError } from "../../common/errors.js";
import { encodeSyncLine, SYNC_CONTENT_TYPE, type SyncMessage } from "../../protocol/index.js";
import type { LocalTask, PieceInfo } from "../storage/local-task.js";
import type { TrustBundle } from "../../protocol/trust.js";
import type { PieceOffers } from "./piece-offers.js";
import type { FanoutMember, SyncFanout } from "./sync-fanout.js";

// A parent pings every this often: a silent parent is a dead parent.
export const PING_MS = 15_000;

// One child's sync stream: piece availability of a task (format:
// protocol/data-plane.ts): what the task already has, then each new piece as
// it is verified (batched by the task's SyncFanout), then "done" (or
// "failed"). A seed in initial seeding also suggests pieces (PieceOffers).
export class SyncStream {
  // While this seed suggests pieces to the child the stream stays open past
  // the task's end: "done" would close it, and with it the suggestions.
  private suggesting = false;
  private doneWaiting = false;
  private held = false;
  private leave: (() => void) | undefined;
  private ping: NodeJS.Timeout | undefined;
  private member: FanoutMember | undefined;

  constructor(
    private readonly task: LocalTask,
    private readonly res: http.ServerResponse,
    private readonly fanout: SyncFanout,
    private readonly offers: { offers: PieceOffers; child: string } | undefined,
    private readonly trust = false,
  ) {}

  start(req: http.IncomingMessage): void {
    const { task, res } = this;
    res.writeHead(200, { "content-type": SYNC_CONTENT_TYPE, "cache-control": "no-store" });
    if (task.meta.pieceLength > 0) this.sendInfo();
    if (this.trust) for (const b of task.bundles.all) this.sendBundle(b);
    // Before any piece list: a child that hears of pieces before it knows
    // suggestions are on would ask for them freely.
    if (this.offers) this.send({ type: "suggest", pieces: [] });
    this.sendPieces(this.trust ? (p) => task.bundles.covers(p) : () => true);
    this.member = this.fanout.join((line) => {
      if (!res.destroyed) res.write(line);
    });
    this.ping = setInterval(() => this.send({ type: "ping" }), PING_MS);
    // A child following the task's progress is using it.
    task.retain();
    this.held = true;
    if (task.failure) return this.onFailed(task.failure);
    if (this.offers) this.joinOffers(this.offers.offers, this.offers.child);
    if (task.done) return this.onDone();
    task.on("info", this.sendInfo);
    if (this.trust) task.on("bundle", this.onBundle);
    task.on("done", this.onDone);
    task.on("failed", this.onFailed);
    req.on("close", this.cleanup);
  }

  private send(msg: SyncMessage): void {
    if (!this.res.destroyed) this.res.write(encodeSyncLine(msg));
  }

  private readonly sendInfo = (): void => {
    if (!this.trust) this.send({ type: "info", contentLength: this.task.meta.contentLength, pieceLength: this.task.meta.pieceLength });
  };

  private sendBundle(b: TrustBundle): void {
    this.send({ type: "bundle", record: JSON.stringify(b) });
  }

  private sendPieces(which: (p: PieceInfo) => boolean): void {
    const pieces: Array<[number, number, number]> = [];
    for (const p of this.task.pieces.values()) if (which(p)) pieces.push([p.number, p.crc, p.length]);
    if (pieces.length > 0) this.send({ type: "pieces", pieces });
  }

  // A new fetcher's bundle: the pieces it signed that were held back go out
  // after it.
  private readonly onBundle = (b: TrustBundle): void => {
    this.sendBundle(b);
    this.sendPieces((p) => p.trust?.fetcher === b.grant.fetcher);
  };

  // Suggestions go out at once (not batched with the piece list): the seed's
  // few fresh pieces are what the child should ask for next.
  private joinOffers(offers: PieceOffers, child: string): void {
    this.suggesting = true;
    const left = offers.join(child, {
      suggest: (pieces) => {
        this.fanout.catchUp(this.member!);
        this.send({ type: "suggest", pieces });
      },
      end: () => {
        if (!this.suggesting) return;
        this.suggesting = false;
        this.leave = undefined;
        this.send({ type: "suggest-end" });
        if (this.doneWaiting) this.onDone();
      },
    });
    // (Suggestions may have ended inside join: the last piece was offered.)
    if (this.suggesting && left) this.leave = left;
    else this.suggesting = false;
  }

  private readonly onDone = (): void => {
    this.fanout.catchUp(this.member!);
    if (this.suggesting) {
      this.doneWaiting = true;
      return;
    }
    this.sendInfo();
    this.send({ type: "done" });
    this.cleanup();
    this.res.end();
  };

  private readonly onFailed = (err: DamselflyError): void => {
    this.send({ type: "failed", code: err.code, message: err.message, ...(err.sourceStatus ? { sourceStatus: err.sourceStatus } : {}) });
    this.cleanup();
    this.res.end();
  };

  private readonly cleanup = (): void => {
    this.leave?.();
    this.leave = undefined;
    if (this.held) this.task.release();
    this.held = false;
    clearInterval(this.ping);
    if (this.member) this.fanout.leave(this.member);
    this.task.off("info", this.sendInfo);
    this.task.off("bundle", this.onBundle);
    this.task.off("done", this.onDone);
    this.task.off("failed", this.onFailed);
  };
}
