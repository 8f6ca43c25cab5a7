import { DamselflyError } from "../../common/errors.js";
import type { LocalTask } from "../storage/local-task.js";
import type { BackToSource } from "./back-to-source.js";
import type { DownloadState } from "./download-state.js";

export interface OriginPhaseDeps {
  state: DownloadState;
  origin: BackToSource;
  task: LocalTask;
  // Some parent holds piece n; the parents hold every missing piece.
  parentsHold: (n: number) => boolean;
  parentsCover: () => boolean;
  // Pieces in flight from parents have landed (or failed).
  noneInFlight: () => Promise<void>;
  complete: () => Promise<void>;
  fail: (e: DamselflyError) => void;
}

// A download's time at the origin: one run at a time, again while pieces are
// missing. Kept parents (a seed peer taking over a task the swarm holds in
// part): the origin is asked only for what no parent holds, the parents
// bring the rest, and the origin takes over what they fail to bring.
export class OriginPhase {
  private running = false;

  constructor(private readonly d: OriginPhaseDeps) {}

  // `again`: the last run ended with pieces still missing.
  start(reason: string, again = false, keepParents = false): void {
    const { state } = this.d;
    if (state.phase === "source" ? !again || this.running : !state.can("source")) return;
    if (state.phase !== "source") state.keepParents = keepParents;
    state.to("source");
    this.running = true;
    this.d.origin
      .run(reason, state.keepParents ? this.d.parentsHold : undefined)
      .then(async () => {
        this.running = false;
        // Pieces in flight from parents finish on their own; wait for them
        // rather than fetch them again.
        await this.d.noneInFlight();
        const t = this.d.task;
        if (t.infoKnown && t.pieces.size === t.totalPieces) await this.d.complete();
        else this.refill("pieces still missing after the origin fetch");
      })
      .catch((err) => {
        this.running = false;
        this.d.fail(DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE"));
      });
  }

  // Pieces are missing: a new run, unless one is going or the kept parents
  // still hold them all.
  refill(reason: string): void {
    const { state } = this.d;
    if (state.ended || state.phase !== "source" || this.running) return;
    if (state.keepParents && this.d.parentsCover()) return;
    state.keepParents = false;
    this.start(reason, true);
  }

  // The kept parents brought nothing for a while: the origin brings the rest.
  stalled(): void {
    const { state } = this.d;
    if (state.phase !== "source" || this.running) return;
    state.keepParents = false;
    this.start("the kept parents stalled", true);
  }
}
