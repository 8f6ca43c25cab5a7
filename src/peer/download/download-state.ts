import { DamselflyError } from "../../common/errors.js";

// Where one task download is in its life:
//   starting   opening the scheduler stream (or finding the task complete)
//   peers      pulling pieces from the parents the scheduler gives
//   source     fetching from the origin (asked to, or nothing else left)
//   verifying  every piece is stored; the whole-object digest is checked
//   succeeded / failed   over; nothing more is sent or fetched
export type DownloadPhase = "starting" | "peers" | "source" | "verifying" | "succeeded" | "failed";

const NEXT: Readonly<Record<DownloadPhase, readonly DownloadPhase[]>> = {
  starting: ["peers", "source", "verifying", "failed"],
  peers: ["source", "verifying", "failed"],
  // source -> source: the origin fetch ended with pieces still missing and
  // runs once more.
  source: ["source", "verifying", "failed"],
  verifying: ["succeeded", "failed"],
  succeeded: [],
  failed: [],
};

export function canMove(from: DownloadPhase, to: DownloadPhase): boolean {
  return NEXT[from].includes(to);
}

// The phase of one download, changed only along NEXT.
export class DownloadState {
  private current: DownloadPhase = "starting";
  // At the origin, and still taking from parents what they hold
  // (origin-phase.ts).
  keepParents = false;

  get phase(): DownloadPhase {
    return this.current;
  }

  can(to: DownloadPhase): boolean {
    return canMove(this.current, to);
  }

  // Throws on a move NEXT does not allow: that is a bug in the caller.
  to(next: DownloadPhase): void {
    if (!canMove(this.current, next)) throw new DamselflyError("DF_ERR_INTERNAL", `a task download cannot go from ${this.current} to ${next}`);
    this.current = next;
  }

  // Succeeded or failed.
  get ended(): boolean {
    return this.current === "succeeded" || this.current === "failed";
  }

  // Pieces are pulled from parents (the origin is not being fetched, or
  // parents are kept while it is, and the download is not over or being
  // verified).
  get pulling(): boolean {
    return this.current === "starting" || this.current === "peers" || (this.current === "source" && this.keepParents);
  }
}
