import { DamselflyError } from "../../common/errors.js";
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from "../../common/pieces.js";
import { checkGeometry } from "../../protocol/trust.js";
import type { Logger } from "../../common/logger.js";
import type { LocalTask } from "../storage/local-task.js";
import type { ParentConn } from "./parent-conn.js";
import type { TaskTrust } from "./task-trust.js";

// A task's geometry (content length, piece length) decides where every
// piece lands in the data file and how much is allocated for it: a parent
// or scheduler that chooses it can make a daemon allocate gigabytes with
// one message, or move pieces so a 2 MiB file grows to 64 MiB. So every
// answer is bounded (trust.ts checkGeometry: piece length 512 KiB..64 MiB,
// content length at most download.maxContentLength) and the first answer
// is the task's for good: a later different one is refused, and with TLS
// only a verified bundle (task-trust.ts) or the origin answers at all.

// Whether an answer is new to the task ("new": the caller records it) or
// what it knows already ("same"). Throws DF_ERR_GEOMETRY_INVALID for an
// answer out of bounds or other than the task's. `contentLength` -1: not
// known yet (a parent streaming from a chunked origin).
export function offerGeometry(task: LocalTask, contentLength: number, pieceLength: number, maxContentLength: number): "new" | "same" {
  checkGeometry(contentLength === -1 ? 0 : contentLength, pieceLength, maxContentLength);
  // The last answer taken, even if still being recorded.
  const m = task.answered;
  const changed = () =>
    new DamselflyError(
      "DF_ERR_GEOMETRY_INVALID",
      `told ${contentLength} bytes in pieces of ${pieceLength}; the task is ${m.contentLength} in pieces of ${m.pieceLength}`,
    );
  if (m.contentLength >= 0 && m.pieceLength > 0) {
    if (contentLength === m.contentLength && pieceLength === m.pieceLength) return "same";
    // Still unknown to the one who answers: only the piece length matters.
    if (contentLength === -1 && pieceLength === m.pieceLength) return "same";
    throw changed();
  }
  if (m.pieceLength > 0 && pieceLength !== m.pieceLength) throw changed();
  return contentLength === -1 && pieceLength === m.pieceLength ? "same" : "new";
}

// Whether a parent's ad for piece n of `length` bytes fits the task (one
// that does not would write outside the task's content): the piece must be
// exactly its range once the geometry is known, and within the bounds before.
export function pieceFits(task: LocalTask, maxContentLength: number, n: number, length: number): boolean {
  if (length <= 0) return false;
  if (task.infoKnown) return n < task.totalPieces && length === task.pieceRange(n).length;
  const pl = task.meta.pieceLength;
  if (pl > 0) return length <= pl && n * pl + length <= maxContentLength;
  return length <= MAX_PIECE_LENGTH && n * MIN_PIECE_LENGTH < maxContentLength;
}

export interface GeometryIntakeDeps {
  task: LocalTask;
  maxContentLength: number;
  // With TLS: the geometry comes from verified bundles only.
  trust: TaskTrust | undefined;
  log: Logger;
  ended(): boolean;
  // Record a new geometry on the task.
  setInfo(contentLength: number, pieceLength: number): void;
  // A parent lied: drop and report it.
  distrust(conn: ParentConn, err: DamselflyError): void;
}

// Where one download takes its task's geometry from: a parent's "info" or
// the scheduler's task info (without TLS only; the first answer wins), or a
// parent's bundle (with TLS; verified, kept with the task to relay).
export class GeometryIntake {
  constructor(private readonly d: GeometryIntakeDeps) {}

  fromParent(conn: ParentConn, contentLength: number, pieceLength: number): void {
    if (!this.d.trust) this.take(contentLength, pieceLength, conn);
  }

  fromScheduler(contentLength: number, pieceLength: number): void {
    if (!this.d.trust) this.take(contentLength, pieceLength);
  }

  // With TLS: a parent's bundle. A new fetcher's is kept with the task and
  // gives the task its geometry if it has none yet; one that does not
  // verify marks the parent a liar.
  bundle(conn: ParentConn, record: string): void {
    const trust = this.d.trust;
    if (!trust || this.d.ended()) return;
    let got: ReturnType<TaskTrust["accept"]>;
    try {
      got = trust.accept(record);
    } catch (err) {
      this.d.distrust(conn, DamselflyError.from(err));
      return;
    }
    if (!got) return;
    got.kept.catch((e: unknown) => this.d.log.warn({ err: (e as Error).message }, "cannot keep a trust bundle with the task"));
    this.take(got.fetcher.contentLength, got.fetcher.pieceLength, conn);
  }

  // Checked before anything is allocated: a parent whose answer is out of
  // bounds or not the task's is dropped; the scheduler's is ignored.
  private take(contentLength: number, pieceLength: number, from?: ParentConn): void {
    try {
      if (offerGeometry(this.d.task, contentLength, pieceLength, this.d.maxContentLength) === "same") return;
    } catch (err) {
      const e = DamselflyError.from(err);
      if (from) this.d.distrust(from, e);
      else this.d.log.warn({ err: e.message }, "ignored the scheduler's task size");
      return;
    }
    this.d.setInfo(contentLength, pieceLength);
  }
}
