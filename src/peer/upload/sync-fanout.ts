import type { LocalTask, PieceInfo } from "../storage/local-task.js";
import { encodeSyncLine } from "../../protocol/index.js";

// One child's place in a task's fan-out: how much of the pending batch it
// was already sent (it joined, or was caught up, mid-batch).
export interface FanoutMember {
  readonly write: (line: string) => void;
  sentUpTo: number;
}

// New pieces of one task go out to every child following it in one line per
// batch window: one timer and one encoded line per batch however many sync
// streams there are (a parent has a stream per child, and every piece it
// finishes is news to all of them).
export class SyncFanout {
  private batch: Array<[number, number, number]> = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly members = new Set<FanoutMember>();
  private readonly onPiece = (p: PieceInfo): void => {
    // With TLS a piece without its signed digest is not handed on (one
    // whose fetcher's bundle comes later is announced with the bundle).
    if (this.trust && !this.task.bundles.covers(p)) return;
    this.batch.push([p.number, p.crc, p.length]);
    this.timer ??= setTimeout(() => this.flush(), this.batchMs);
  };

  constructor(
    private readonly task: LocalTask,
    private readonly batchMs: number,
    private readonly trust = false,
  ) {}

  // The caller has just sent the child every piece the task holds, the
  // pending batch's included: the child gets only later ones.
  join(write: (line: string) => void): FanoutMember {
    if (this.members.size === 0) this.task.on("piece", this.onPiece);
    const m = { write, sentUpTo: this.batch.length };
    this.members.add(m);
    return m;
  }

  leave(m: FanoutMember): void {
    if (!this.members.delete(m) || this.members.size > 0) return;
    this.task.off("piece", this.onPiece);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.batch = [];
  }

  // Sends one child what it has not had of the pending batch, now (before a
  // message that must follow it, such as a suggestion or "done").
  catchUp(m: FanoutMember): void {
    if (m.sentUpTo >= this.batch.length) return;
    m.write(piecesLine(this.batch, m.sentUpTo));
    m.sentUpTo = this.batch.length;
  }

  private flush(): void {
    this.timer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    let line: string | undefined;
    for (const m of this.members) {
      if (m.sentUpTo === 0) m.write((line ??= piecesLine(batch, 0)));
      else if (m.sentUpTo < batch.length) m.write(piecesLine(batch, m.sentUpTo));
      m.sentUpTo = 0;
    }
  }
}

// The line announcing the batch's pieces from index `from` on.
function piecesLine(batch: Array<[number, number, number]>, from: number): string {
  return encodeSyncLine({ type: "pieces", pieces: from === 0 ? batch : batch.slice(from) });
}
