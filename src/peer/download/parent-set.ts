import { DamselflyError } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import { SpanKind, startSpan, type Span } from "../../common/trace.js";
import type { LocalTask } from "../storage/local-task.js";
import type { SyncMessage } from "../../protocol/index.js";
import { ParentConn, type ParentAddress, type ParentConnOptions } from "./parent-conn.js";

// A parent measured over this many pieces at under 1/SLOW_PARENT_RATIO of the
// best parent's throughput is dropped.
const SLOW_PARENT_MIN_PIECES = 3;
const SLOW_PARENT_RATIO = 8;
const SLOW_PARENT_WINDOW_MS = 5_000;

export interface ParentSetOptions {
  task: LocalTask;
  // This download's peer ID: never its own parent.
  selfId: string;
  conn: ParentConnOptions;
  // The download's span: each parent gets a child span (its pieces summed
  // up), never one per piece.
  span: Span;
  log: Logger;
  hooks: ParentSetHooks;
}

// What a parent's sync stream tells the download.
export interface ParentSetHooks {
  // The parent's idea of the task's size (its "info"; -1: unknown yet).
  sizeKnown(conn: ParentConn, contentLength: number, pieceLength: number): void;
  // With TLS: a trust bundle the parent holds (its record's text).
  bundle(conn: ParentConn, record: string): void;
  // The parent sent something no honest parent would (a piece outside the
  // task, a record that does not verify).
  distrust(conn: ParentConn, err: DamselflyError): void;
  // The parent reported a failure.
  failed(conn: ParentConn, err: DamselflyError): void;
  // The sync stream broke.
  broken(conn: ParentConn, reason: string): void;
  // Some parent holds more pieces, or finished sending.
  changed(): void;
}

// The parents of one download and which pieces each holds (its sync stream
// keeps ParentConn.pieces current): who to ask for what, and which parents
// are no use any more. Dropped parents stay on the blocklist.
export class ParentSet {
  readonly conns = new Map<string, ParentConn>();
  readonly blocklist = new Set<string>();
  private readonly spans = new Map<string, Span>();

  constructor(private readonly o: ParentSetOptions) {}

  get size(): number {
    return this.conns.size;
  }

  // Every parent this download had, dropped ones included.
  get everHad(): number {
    return this.conns.size + this.blocklist.size;
  }

  // Connects to a new parent and follows its sync stream; a parent already
  // known, dropped before, or this peer itself is ignored.
  add(addr: ParentAddress): void {
    if (this.conns.has(addr.peerId) || this.blocklist.has(addr.peerId) || addr.peerId === this.o.selfId) return;
    const conn = new ParentConn(addr, this.o.task.id, this.o.conn);
    this.conns.set(addr.peerId, conn);
    if (this.o.span.recording) {
      this.spans.set(
        addr.peerId,
        startSpan("pieces from parent", {
          kind: SpanKind.CLIENT,
          parent: this.o.span,
          attributes: {
            "damselfly.parent_peer_id": addr.peerId,
            "damselfly.parent_host_id": addr.hostId,
            "server.address": addr.ip,
            "server.port": addr.port,
            "damselfly.seed": addr.isSeed,
          },
        }),
      );
    }
    this.o.log.debug({ parent: addr.peerId, remote: `${addr.ip}:${addr.port}` }, "parent added");
    const h = this.o.hooks;
    conn
      .sync((msg) => this.onMessage(conn, msg))
      .then(() => h.changed())
      .catch((err) => {
        if (conn.closed) return;
        const code = err instanceof DamselflyError ? err.code : undefined;
        if (code === "DF_ERR_GEOMETRY_INVALID" || code === "DF_ERR_TRUST_INVALID") h.distrust(conn, err as DamselflyError);
        else h.broken(conn, `sync stream: ${(err as Error).message}`);
      });
  }

  private onMessage(conn: ParentConn, msg: SyncMessage): void {
    const h = this.o.hooks;
    if (msg.type === "info") h.sizeKnown(conn, msg.contentLength, msg.pieceLength);
    else if (msg.type === "bundle") h.bundle(conn, msg.record);
    if (msg.type === "failed") {
      h.failed(
        conn,
        new DamselflyError(
          DamselflyError.isCode(msg.code) ? msg.code : "DF_ERR_PARENT_FAILED",
          msg.message,
          msg.sourceStatus ? { sourceStatus: msg.sourceStatus } : {},
        ),
      );
      return;
    }
    h.changed();
  }

  // Drops a parent for good; false when it was not in the set.
  drop(conn: ParentConn, reason: string): boolean {
    if (!this.conns.has(conn.id)) return false;
    this.conns.delete(conn.id);
    this.blocklist.add(conn.id);
    conn.close();
    this.endSpan(conn, reason);
    this.o.log.info({ parent: conn.id, reason }, "parent dropped");
    return true;
  }

  private endSpan(conn: ParentConn, dropped?: string): void {
    const s = this.spans.get(conn.id);
    if (!s) return;
    this.spans.delete(conn.id);
    s.setAttribute("damselfly.pieces", conn.piecesServed).setAttribute("damselfly.failures", conn.failures).setAttribute("damselfly.dropped", dropped);
    s.end();
  }

  // Every missing piece is held by some parent, or some parent is still
  // downloading and may yet get it (or the size is unknown yet).
  // Some parent holds piece n.
  holds(n: number): boolean {
    for (const p of this.conns.values()) if (p.pieces.has(n)) return true;
    return false;
  }

  coverMissing(): boolean {
    const parents = [...this.conns.values()];
    if (!this.o.task.infoKnown) return parents.length > 0;
    if (parents.some((p) => !p.done)) return true;
    return this.o.task.missingPieces().every((n) => parents.some((p) => p.pieces.has(n)));
  }

  // A parent far slower than the best one holds back the whole download
  // (its pieces arrive last): the reason to drop it once measured, unless
  // some piece we miss can only come from it. Only recent measurements are
  // compared.
  tooSlow(parent: ParentConn): string | undefined {
    if (this.conns.size < 2 || parent.piecesServed < SLOW_PARENT_MIN_PIECES) return undefined;
    const recent = Date.now() - SLOW_PARENT_WINDOW_MS;
    let best = 0;
    for (const p of this.conns.values()) if (p.piecesServed >= SLOW_PARENT_MIN_PIECES && p.ratedAt >= recent) best = Math.max(best, p.throughput);
    if (parent.throughput * SLOW_PARENT_RATIO >= best) return undefined;
    for (const n of this.o.task.missingPieces()) {
      if (!parent.pieces.has(n)) continue;
      let elsewhere = false;
      for (const p of this.conns.values()) if (p !== parent && p.pieces.has(n)) elsewhere = true;
      if (!elsewhere) return undefined;
    }
    return `slow parent: ${(parent.throughput).toFixed(2)} vs best ${best.toFixed(2)} bytes/µs`;
  }

  // Parents that finished sending yet lack pieces we miss (they dropped a
  // corrupt one) will never help again.
  deadEnds(): ParentConn[] {
    const t = this.o.task;
    if (!t.infoKnown || this.conns.size === 0) return [];
    // Runs on every idle pump: the list of missing pieces only when needed.
    let missing: number[] | undefined;
    const dead: ParentConn[] = [];
    for (const p of this.conns.values()) {
      if (!p.done || p.pieces.size >= t.totalPieces) continue;
      missing ??= t.missingPieces();
      if (missing.some((n) => !p.pieces.has(n))) dead.push(p);
    }
    return dead;
  }

  // When the first parent that said busy may take requests again (Infinity:
  // none is busy).
  soonestFree(now: number): number {
    let soonest = Infinity;
    for (const p of this.conns.values()) if (p.busyUntil > now && p.busyUntil < soonest) soonest = p.busyUntil;
    return soonest;
  }

  // The fastest parent other than `except` that holds piece `n` and has room
  // for one more request (an endgame duplicate).
  fastestWith(n: number, except: string, perParent: number, now: number): ParentConn | undefined {
    let best: ParentConn | undefined;
    for (const p of this.conns.values()) {
      if (p.id === except || !p.pieces.has(n) || p.inFlight >= perParent || p.busyUntil > now) continue;
      if (!best || p.throughput > best.throughput) best = p;
    }
    return best;
  }

  closeAll(): void {
    for (const p of this.conns.values()) {
      p.close();
      this.endSpan(p);
    }
    this.conns.clear();
  }
}
