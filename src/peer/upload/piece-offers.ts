import type { LocalTask, PieceInfo } from "../storage/local-task.js";

// Pieces each child has been offered and not yet asked for. Enough that a
// child whose only parent is this seed keeps its requests in flight (it asks
// up to 4 at once of one parent) and never waits on the next suggestion.
export const OFFERS_AHEAD = 4;
// A suggestion not asked for in this long goes back to the pool (the child
// got the piece elsewhere, or stalled): other children may take it.
export const OFFER_TTL_MS = 10_000;

export interface OfferSink {
  suggest(pieces: number[]): void;
  // Suggestions are over: every piece is fair game from now on.
  end(): void;
}

interface Child {
  readonly sink: OfferSink;
  // Piece -> when it was suggested.
  readonly pending: Map<number, number>;
  // Suggested and never asked for: not suggested to this child again.
  readonly declined: Set<number>;
}

// Initial seeding for a seed peer (BitTorrent's super-seeding, simplified).
// A cold swarm's children all ask the seed for pieces at once, and while the
// seed is still fetching from the origin it holds only a handful: its first
// uploads went to the same few pieces, which left the peers nothing to trade
// (docs/decisions/initial-seeding.md). So
// until every piece has been offered once, the seed suggests to each child
// pieces nobody else was offered, and children ask the seed only for those
// (and for what a local reader is blocked on); they get the rest from each
// other. The seed still serves any piece it holds to whoever asks.
export class PieceOffers {
  private readonly children = new Map<string, Child>();
  // Pieces held and never offered, in the order the seed got them (for a seed
  // fetching from the origin: ascending, which suits in-order readers).
  private fresh = new Set<number>();
  private readonly offered = new Set<number>();
  private ended = false;
  private readonly onPiece = (p: PieceInfo): void => this.added(p.number, p.fromPeer === true);
  // A task of unknown length learns its piece count at the end.
  private readonly onDone = (): void => this.maybeEnd();
  private expiry: NodeJS.Timeout | undefined;

  constructor(
    private readonly task: LocalTask,
    private readonly now: () => number = Date.now,
  ) {
    for (const n of task.pieces.keys()) this.fresh.add(n);
    task.on("piece", this.onPiece);
    task.on("done", this.onDone);
  }

  get active(): boolean {
    return !this.ended;
  }

  // A child's sync stream opened. Returns its leave function, or undefined
  // when suggestions are over (the stream then advertises plainly).
  join(childId: string, sink: OfferSink): (() => void) | undefined {
    if (this.ended) return undefined;
    const prev = this.children.get(childId);
    if (prev) this.release(prev);
    const child: Child = { sink, pending: new Map(), declined: new Set() };
    this.children.set(childId, child);
    if (!this.expiry) {
      this.expiry = setInterval(() => this.expire(), OFFER_TTL_MS / 2);
      this.expiry.unref();
    }
    this.topUp(child);
    return () => {
      if (this.children.get(childId) !== child) return;
      this.children.delete(childId);
      if (this.children.size === 0) this.stopExpiry();
      this.release(child);
    };
  }

  // The seed stored a new piece: it goes to the child with the fewest
  // suggestions outstanding. One it took from a peer (a seed taking over a
  // task the swarm holds in part) is in the swarm already: suggesting it
  // would only hold a child's suggestions on pieces it likely has.
  added(n: number, fromPeer = false): void {
    if (this.ended || this.offered.has(n)) return;
    if (fromPeer) {
      this.offered.add(n);
      this.maybeEnd();
      return;
    }
    this.fresh.add(n);
    let best: Child | undefined;
    for (const c of this.children.values()) if (c.pending.size < OFFERS_AHEAD && (!best || c.pending.size < best.pending.size)) best = c;
    if (best) this.topUp(best);
  }

  // A child asked for piece n: one suggestion used, the next goes out.
  requested(childId: string, n: number): void {
    const c = this.children.get(childId);
    if (!c || !c.pending.delete(n)) return;
    this.topUp(c);
  }

  // Every piece has been offered once and the seed holds them all: from now
  // on children pick freely (pieces spread over the swarm, and random picks
  // from the whole task rarely collide).
  maybeEnd(): void {
    if (this.ended) return;
    const total = this.task.totalPieces;
    if (total < 0 || this.offered.size < total || this.task.pieces.size < total) return;
    this.ended = true;
    this.stopExpiry();
    this.task.off("piece", this.onPiece);
    this.task.off("done", this.onDone);
    for (const c of this.children.values()) c.sink.end();
    this.children.clear();
    this.fresh.clear();
  }

  private topUp(c: Child): void {
    if (c.pending.size >= OFFERS_AHEAD || this.fresh.size === 0) return;
    const out: number[] = [];
    for (const n of this.fresh) {
      if (c.pending.size >= OFFERS_AHEAD) break;
      if (c.declined.has(n)) continue;
      this.fresh.delete(n);
      // Dropped (rotten) since it was stored.
      if (!this.task.pieces.has(n)) continue;
      this.offered.add(n);
      c.pending.set(n, this.now());
      out.push(n);
    }
    if (out.length === 0) return;
    c.sink.suggest(out);
    this.maybeEnd();
  }

  // Suggestions left unasked for OFFER_TTL_MS go back to the pool.
  expire(): void {
    const stale: number[] = [];
    const before = this.now() - OFFER_TTL_MS;
    for (const c of this.children.values()) {
      for (const [n, at] of c.pending) {
        if (at > before) continue;
        c.pending.delete(n);
        c.declined.add(n);
        stale.push(n);
      }
    }
    if (stale.length > 0) this.requeue(stale);
  }

  private stopExpiry(): void {
    clearInterval(this.expiry);
    this.expiry = undefined;
  }

  // A child that left never asked for these: offer them again.
  private release(c: Child): void {
    if (c.pending.size === 0) return;
    const back = [...c.pending.keys()];
    c.pending.clear();
    this.requeue(back);
  }

  // Back in front of the fresh pieces (they are older), and handed out again.
  private requeue(pieces: number[]): void {
    for (const n of pieces) this.offered.delete(n);
    this.fresh = new Set([...pieces, ...this.fresh]);
    for (const c of this.children.values()) this.topUp(c);
  }
}
