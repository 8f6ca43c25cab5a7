import type { LocalTask } from "../storage/local-task.js";

export interface PiecePick<P extends SelectableParent> {
  piece: number;
  parent: P;
}

// What the selector needs of a parent connection.
export interface SelectableParent {
  readonly pieces: ReadonlyMap<number, unknown>;
  readonly inFlight: number;
  readonly throughput: number;
  // Said "all upload slots busy" recently: not asked again before this time (ms).
  readonly busyUntil: number;
  // A seed in initial seeding: only these are asked of it (see PieceOffers).
  readonly suggested?: ReadonlySet<number> | undefined;
}

// `overrule`: a local reader has waited long for the piece, so a seed's
// suggestions do not hold it back any longer.
function mayAsk(p: SelectableParent, n: number, overrule: boolean): boolean {
  return p.pieces.has(n) && (overrule || p.suggested === undefined || p.suggested.has(n));
}

// Pieces from the one a local reader is blocked on go in order, this many, so
// the reader (the proxy, a streaming `get`) keeps moving.
export const STREAM_WINDOW = 4;

// How long a reader waits for its window from peers before a seed in initial
// seeding is asked for it regardless of its suggestions. At once was a herd:
// 16 nodes pulling one blob through their proxies at the same moment each
// asked the seed for the same first pieces (64 requests for 4 pieces), the
// seed's uplink sent copies instead of new pieces, and for ~2 s nothing else
// moved (N=16: 1.20-1.22x the bound against 1.15x with `get`).
export const READER_PATIENCE_MS = 1_000;

// Decides which missing piece to fetch next and from which parent.
// - When a local reader waits, the STREAM_WINDOW missing pieces from the one
//   it waits for go first, in order: from a seed in initial seeding only
//   if suggested to this peer, until the reader has waited
//   READER_PATIENCE_MS (another peer will have them by then).
// - Otherwise the rarest piece among the parents goes first, ties broken by a
//   random order private to this peer: peers that download at once then hold
//   different pieces and can trade them, instead of all waiting for the same
//   piece from the same parent. (Without a reader nothing is gained by order:
//   16 peers all asking the seed for piece 0 first would have it send the same
//   bytes 16 times instead of 16 different pieces.)
// Among parents holding the piece, the one with the most spare capacity,
// weighted by measured throughput, wins.
export class PieceSelector<P extends SelectableParent> {
  private cursor = 0;
  private rank: Uint32Array | undefined;
  // Pieces already looked at in this pass (== gen), without clearing per pass.
  private mark: Uint32Array | undefined;
  private gen = 0;

  constructor(
    private readonly task: LocalTask,
    // Requests per parent at once; the download lowers it when it has many parents.
    public perParent: number,
    private readonly random: () => number = Math.random,
  ) {}

  next(parents: ReadonlyMap<string, P>, inFlight: ReadonlyMap<number, string>, now = Date.now()): PiecePick<P> | undefined {
    return this.pick(parents, inFlight, 1, now)[0];
  }

  // Up to `max` (piece, parent) pairs to request now, best first. One scan
  // of the missing pieces serves a whole pump: rarity and holders are
  // counted once, then parents are filled up to their limit.
  pick(parents: ReadonlyMap<string, P>, inFlight: ReadonlyMap<number, string>, max: number, now = Date.now()): PiecePick<P>[] {
    if (max <= 0) return [];
    // Parents that may take a request now; often none (all busy or at their
    // limit), and then there is nothing to scan.
    const room = new Map<P, number>();
    for (const p of parents.values()) if (p.inFlight < this.perParent && p.busyUntil <= now) room.set(p, this.perParent - p.inFlight);
    if (room.size === 0) return [];
    const { inOrder, rest } = this.candidates(parents, inFlight, [...room.keys()], now);
    rest.sort((a, b) => a.avail - b.avail || a.rank - b.rank);
    return assign(room, inOrder, rest, max);
  }

  // The pieces some usable parent may be asked for now: the reader's window
  // (in order), and the rest with their rarity and rank.
  private candidates(parents: ReadonlyMap<string, P>, inFlight: ReadonlyMap<number, string>, usable: P[], now: number): Candidates {
    const pieces = this.task.pieces;
    while (pieces.has(this.cursor)) this.cursor++;
    const total = this.task.totalPieces;
    const wanted = this.task.firstWanted();
    const windowFrom = wanted === undefined ? Infinity : Math.max(wanted, this.cursor);
    const overrule = wanted !== undefined && now - (this.task.wantedSince(wanted) ?? now) >= READER_PATIENCE_MS;
    const rank = total >= 0 ? this.ranks(total) : undefined;
    // Reader's window first (in order), then the rest by rarity, then rank.
    const inOrder: Array<{ n: number; overrule: boolean }> = [];
    const rest: Array<{ n: number; avail: number; rank: number }> = [];
    const held = (n: number, overrule: boolean): boolean => {
      for (const p of usable) if (mayAsk(p, n, overrule)) return true;
      return false;
    };
    if (!rank) {
      // Size unknown yet: whatever the parents advertise, in order.
      for (const n of advertised(parents)) {
        if (!pieces.has(n) && !inFlight.has(n) && held(n, false)) inOrder.push({ n, overrule: false });
      }
    } else {
      let windowEnd = windowFrom;
      if (wanted !== undefined) {
        let seen = 0;
        for (; windowEnd < total && seen < STREAM_WINDOW; windowEnd++) {
          if (pieces.has(windowEnd)) continue;
          seen++;
          if (!inFlight.has(windowEnd) && held(windowEnd, overrule)) inOrder.push({ n: windowEnd, overrule });
        }
      }
      const consider = (n: number): void => {
        if (pieces.has(n) || inFlight.has(n) || (n >= windowFrom && n < windowEnd) || !held(n, false)) return;
        let avail = 0;
        for (const p of parents.values()) if (p.pieces.has(n)) avail++;
        rest.push({ n, avail, rank: rank[n]! });
      };
      // Walk whichever is shorter: what the usable parents hold (early on, a
      // few pieces) or every missing piece. Pumps run on every availability
      // message, so a pass over all missing pieces times all parents while
      // little can be fetched was the daemons' top cost in a 16-peer swarm's
      // first 3 s (selection and pumps: 18 % of their CPU, 4 % after this).
      let offered = 0;
      for (const p of usable) offered += p.suggested ? p.suggested.size : p.pieces.size;
      if (offered < total - pieces.size) {
        const mark = this.marks(total);
        const gen = ++this.gen;
        for (const p of usable) {
          for (const n of p.suggested ?? p.pieces.keys()) {
            if (n >= total || mark[n] === gen) continue;
            mark[n] = gen;
            consider(n);
          }
        }
      } else {
        for (let n = this.cursor; n < total; n++) consider(n);
      }
    }
    return { inOrder, rest };
  }

  private marks(total: number): Uint32Array {
    if (!this.mark || this.mark.length !== total) {
      this.mark = new Uint32Array(total);
      this.gen = 0;
    }
    return this.mark;
  }

  // A random permutation of piece numbers, fixed for this download.
  private ranks(total: number): Uint32Array {
    if (this.rank && this.rank.length === total) return this.rank;
    const r = new Uint32Array(total);
    for (let i = 0; i < total; i++) r[i] = i;
    for (let i = total - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      const t = r[i]!;
      r[i] = r[j]!;
      r[j] = t;
    }
    this.rank = r;
    return r;
  }
}

function advertised(parents: ReadonlyMap<string, SelectableParent>): number[] {
  const set = new Set<number>();
  for (const p of parents.values()) for (const n of p.pieces.keys()) set.add(n);
  return [...set].sort((a, b) => a - b);
}

interface Candidates {
  inOrder: Array<{ n: number; overrule: boolean }>;
  rest: Array<{ n: number; avail: number; rank: number }>;
}

// Gives each candidate, in order, to the parent with the most spare
// capacity weighted by throughput, until `max` are picked or no parent has
// room.
function assign<P extends SelectableParent>(room: Map<P, number>, inOrder: Candidates["inOrder"], rest: Candidates["rest"], max: number): PiecePick<P>[] {
  const picks: PiecePick<P>[] = [];
  const assigned = new Map<P, number>();
  const take = (n: number, overrule: boolean): void => {
    let parent: P | undefined;
    let score = -1;
    for (const [p, left] of room) {
      if (left <= 0 || !mayAsk(p, n, overrule)) continue;
      const s = p.throughput / (1 + p.inFlight + (assigned.get(p) ?? 0));
      if (s > score) {
        parent = p;
        score = s;
      }
    }
    if (!parent) return;
    room.set(parent, room.get(parent)! - 1);
    assigned.set(parent, (assigned.get(parent) ?? 0) + 1);
    picks.push({ piece: n, parent });
  };
  for (const c of inOrder) {
    if (picks.length >= max) return picks;
    take(c.n, c.overrule);
  }
  for (const c of rest) {
    if (picks.length >= max) break;
    take(c.n, false);
  }
  return picks;
}
