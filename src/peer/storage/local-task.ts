import { EventEmitter } from "node:events";
import { constants, copyFile, open, rename, stat, writeFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { DamselflyError } from "../../common/errors.js";
import { crc32Update, pieceCount, pieceRange } from "../../common/pieces.js";
import type { TrustBundle } from "../../protocol/trust.js";
import { PieceLog, type PieceInfo } from "./piece-log.js";
import { STORE_FILE_MODE } from "./modes.js";
import { dataStamp } from "./data-stamp.js";
import type { TaskMeta } from "./task-meta.js";
import { TaskBundles } from "./task-bundles.js";
import { ReaderWants } from "./reader-wants.js";

export type { PieceInfo };

export type { TaskMeta };

// Frees disk space before a task's data file grows to `bytes` (the disk GC).
export type MakeRoom = (task: LocalTask, bytes: number) => Promise<void>;

export interface LocalTaskEvents {
  piece: [PieceInfo];
  info: [];
  done: [];
  failed: [DamselflyError];
  bundle: [TrustBundle];
}

// One task on disk: `data` (pieces at their offsets), `task.json` (metadata)
// and `pieces.log` (PieceLog: the verified pieces, so a crash loses at most
// the piece being written). Only pieces in `pieces` are ever read back.
export class LocalTask extends EventEmitter<LocalTaskEvents> {
  readonly pieces = new Map<number, PieceInfo>();
  // Pieces verified on receipt by this process.
  private readonly received = new Set<number>();
  private readonly pieceLog: PieceLog;
  // With TLS: the fetchers' signed geometry its piece records refer to.
  readonly bundles: TaskBundles;
  failure: DamselflyError | undefined;
  // Every stored piece was CRC-checked by this process (on receipt, or by a
  // full pass after a restart). Cleared when a piece turns out corrupt.
  verified = false;
  private fh: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private ops = 0;
  // Told whenever the data file is used (the store keeps an LRU of open files).
  onOpenUse: ((t: LocalTask) => void) | undefined;
  private writeChain: Promise<void> = Promise.resolve();
  // Pieces local readers are blocked on (the download fetches these first).
  private readonly wants = new ReaderWants();
  // Downloads, readers and uploads using the task now: the disk GC never
  // evicts a task while this is above zero. A counter, not a closure per
  // holder: uploads take it per piece.
  private leases = 0;
  // Evicted or deleted: holders that still have the object must not use it.
  removed = false;
  // lastAccessAt as last written to task.json (touches are batched, see
  // Storage.flushAccessTimes).
  private savedAccessAt: number;
  private metaChain: Promise<void> = Promise.resolve();
  private infoChain: Promise<void> = Promise.resolve();
  private latestInfo: { contentLength: number; pieceLength: number } | undefined;

  constructor(
    readonly dir: string,
    public meta: TaskMeta,
  ) {
    super();
    this.setMaxListeners(0);
    this.savedAccessAt = meta.lastAccessAt;
    this.pieceLog = new PieceLog(join(dir, "pieces.log"), () => {
      this.onOpenUse?.(this);
      if (this.removed) throw new DamselflyError("DF_ERR_CANCELLED", `task ${this.id} was removed`);
    });
    this.bundles = new TaskBundles(
      join(dir, "bundles.json"),
      (b) => this.emit("bundle", b),
      () => this.removed,
    );
  }

  // Done, and every piece's signed digest held with its fetcher's bundle:
  // with TLS only such a task is served to children and announced as cached.
  get trusted(): boolean {
    return this.meta.done && this.bundles.coverAll(this.pieces.values());
  }

  retain(): void {
    this.leases++;
  }

  release(): void {
    if (this.leases > 0) this.leases--;
  }

  get inUse(): number {
    return this.leases;
  }

  // Keeps the task for `ms` more (a client is about to link its data file).
  holdFor(ms: number): void {
    this.retain();
    setTimeout(() => this.release(), ms).unref();
  }

  get accessDirty(): boolean {
    return this.meta.lastAccessAt !== this.savedAccessAt;
  }

  get id(): string {
    return this.meta.id;
  }

  // A reader waits for piece n until the returned function is called.
  want(n: number): () => void {
    return this.wants.want(n);
  }

  wantedSince(n: number): number | undefined {
    return this.wants.since(n);
  }

  firstWanted(): number | undefined {
    return this.wants.first();
  }

  get dataPath(): string {
    return join(this.dir, "data");
  }

  get infoKnown(): boolean {
    return this.meta.contentLength >= 0 && this.meta.pieceLength > 0;
  }

  get totalPieces(): number {
    return this.infoKnown ? pieceCount(this.meta.contentLength, this.meta.pieceLength) : -1;
  }

  get finishedBytes(): number {
    let n = 0;
    for (const p of this.pieces.values()) n += p.length;
    return n;
  }

  get done(): boolean {
    return this.meta.done;
  }

  pieceRange(n: number): { offset: number; length: number } {
    return pieceRange(n, this.meta.contentLength, this.meta.pieceLength);
  }

  private async handle(): Promise<FileHandle> {
    this.onOpenUse?.(this);
    if (this.fh) return this.fh;
    // Deleted: a late write must not bring the data file back.
    if (this.removed) throw new DamselflyError("DF_ERR_CANCELLED", `task ${this.id} was removed`);
    // Read-write, created if missing, never truncated (positional writes).
    this.opening ??= open(this.dataPath, constants.O_RDWR | constants.O_CREAT, STORE_FILE_MODE).then((h) => (this.fh = h));
    return this.opening;
  }

  // Runs one file operation; the handle cannot be closed under it.
  private async withHandle<T>(fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    this.ops++;
    try {
      return await fn(await this.handle());
    } finally {
      this.ops--;
    }
  }

  get hasOpenHandle(): boolean {
    return this.fh !== undefined || this.opening !== undefined || this.pieceLog.isOpen;
  }

  // Closes the data file if no operation is using it (the store bounds how
  // many task files stay open); the next operation reopens it.
  async closeIfIdle(): Promise<boolean> {
    if (this.ops > 0 || (!this.fh && !this.pieceLog.isOpen)) return false;
    const fh = this.fh;
    this.fh = undefined;
    this.opening = undefined;
    await Promise.all([fh?.close().catch(() => undefined), this.pieceLog.close()]);
    return true;
  }

  // Outputs of earlier versions may be hard links to the data file; before
  // the store writes to a task again (a resumed or repaired download) it
  // gives the data file a new inode, so a user's output never changes.
  async prepareForWrites(): Promise<void> {
    const st = await stat(this.dataPath).catch(() => undefined);
    if (!st || st.nlink <= 1) return;
    await this.close();
    const tmp = join(this.dir, `data.${process.pid}.unshare`);
    await copyFile(this.dataPath, tmp);
    await rename(tmp, this.dataPath);
  }

  // The geometry last taken (setInfo may still be applying it), else the
  // task's.
  get answered(): { contentLength: number; pieceLength: number } {
    return this.latestInfo ?? this.meta;
  }

  // Records content length and piece length once the origin (or a parent) told us.
  // `makeRoom` is asked before the data file grows to its full length (the
  // disk GC frees space first if the filesystem cannot hold it). The caller
  // bounds them (trust.ts checkGeometry); once known they never change: a
  // piece length that changed would move every piece and grow the file.
  // Checked at once against the last answer taken; applied in order.
  setInfo(contentLength: number, pieceLength: number, makeRoom?: MakeRoom): Promise<void> {
    const m = this.answered;
    if (m.contentLength === contentLength && m.pieceLength === pieceLength) return this.infoChain;
    if ((m.contentLength >= 0 && m.pieceLength > 0) || (m.pieceLength > 0 && m.pieceLength !== pieceLength) || contentLength < -1 || pieceLength <= 0) {
      const why = `task ${this.id} is ${m.contentLength} bytes in pieces of ${m.pieceLength}: told ${contentLength} in pieces of ${pieceLength}`;
      return Promise.reject(new DamselflyError("DF_ERR_GEOMETRY_INVALID", why));
    }
    this.latestInfo = { contentLength, pieceLength };
    const next = this.infoChain.then(async () => {
      if (contentLength > 0) await makeRoom?.(this, contentLength);
      this.meta = { ...this.meta, contentLength, pieceLength };
      if (contentLength >= 0) await this.withHandle((fh) => fh.truncate(contentLength));
      await this.saveMeta();
      this.emit("info");
    });
    // Not applied (no room): the task's own geometry stands.
    this.infoChain = next.catch(() => void (this.latestInfo = undefined));
    return next;
  }

  // Writes go to the file one system call at a time: the kernel serialises
  // writers of one file anyway, and concurrent ones (a piece per parent) would
  // only spin on the inode lock. Pieces still stream in concurrently.
  writev(offset: number, chunks: Uint8Array[]): Promise<void> {
    const next = this.writeChain.then(() => this.writevNow(offset, chunks));
    this.writeChain = next.catch(() => undefined);
    return next;
  }

  private writevNow(offset: number, chunks: Uint8Array[]): Promise<void> {
    return this.withHandle(async (fh) => {
      let at = offset;
      let rest = chunks;
      while (rest.length > 0) {
        const { bytesWritten } = await fh.writev(rest, at);
        at += bytesWritten;
        rest = dropBytes(rest, bytesWritten);
      }
    });
  }

  read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.withHandle(async (fh) => {
      const buf = into ?? Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new DamselflyError("DF_ERR_STORAGE_IO", `short read at ${offset + done} in task ${this.id}`);
        done += bytesRead;
      }
      return buf.length === length ? buf : buf.subarray(0, length);
    });
  }

  // Reads a whole finished piece and checks its CRC; a piece that fails is
  // dropped so it is fetched again and never handed on.
  async readVerifiedPiece(n: number, into?: Buffer): Promise<Buffer> {
    const info = this.pieces.get(n);
    if (!info) throw new DamselflyError("DF_ERR_PIECE_NOT_FOUND", `piece ${n} of task ${this.id} is not stored`);
    const { offset } = this.pieceRange(n);
    const buf = await this.read(offset, info.length, into && into.length >= info.length ? into.subarray(0, info.length) : undefined);
    if (!this.isFresh(n) && crc32Update(buf) !== info.crc) {
      await this.invalidatePiece(n);
      throw new DamselflyError("DF_ERR_PIECE_CORRUPT", `stored piece ${n} of task ${this.id} failed its CRC-32 check`);
    }
    return buf;
  }

  // True while the task is downloading and this process verified the piece
  // on receipt: re-checking it moments later only burns CPU. Once the task is
  // done, reads are checked again (a long-lived store can rot).
  isFresh(n: number): boolean {
    return !this.meta.done && this.received.has(n);
  }

  async markPiece(p: PieceInfo): Promise<void> {
    if (this.pieces.has(p.number)) return;
    this.pieces.set(p.number, p);
    this.received.add(p.number);
    await this.pieceLog.added(p);
    this.emit("piece", p);
  }

  async invalidatePiece(n: number): Promise<void> {
    this.received.delete(n);
    if (!this.pieces.delete(n)) return;
    this.verified = false;
    if (this.meta.done) {
      this.meta = { ...this.meta, done: false };
      await this.saveMeta();
    }
    await this.pieceLog.dropped(n);
  }

  // `verified`: every piece was checked on receipt in this process.
  // `digestVerified`: the whole content matched digestTaskId.
  async markDone(verified: boolean, digestVerified = this.meta.digestVerified, contentDigest?: string): Promise<void> {
    this.verified = verified;
    await this.writeChain;
    this.meta = {
      ...this.meta,
      dataStamp: await dataStamp(this.dataPath),
      done: true,
      lastAccessAt: Date.now(),
      ...(digestVerified ? { digestVerified } : {}),
      ...(contentDigest ? { contentDigest } : {}),
    };
    await this.saveMeta();
    await this.pieceLog.close();
    this.emit("done");
  }

  // The task's own TTL (`cache import --ttl`, a replica of such a task).
  async setTtl(ms: number): Promise<void> {
    if (this.meta.ttlMs === ms) return;
    this.meta = { ...this.meta, ttlMs: ms };
    await this.saveMeta();
  }

  fail(err: DamselflyError): void {
    this.failure = err;
    this.emit("failed", err);
  }

  // A finished task with all pieces present (after a restart or a GC check).
  isComplete(): boolean {
    return this.infoKnown && this.pieces.size === this.totalPieces;
  }

  missingPieces(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.totalPieces; i++) if (!this.pieces.has(i)) out.push(i);
    return out;
  }

  touch(): void {
    this.meta.lastAccessAt = Date.now();
  }

  // Serialised: two saves at once would share the temporary name.
  saveMeta(): Promise<void> {
    const next = this.metaChain.then(async () => {
      // An evicted task's directory is being deleted: writing would bring it back.
      if (this.removed) return;
      const meta = this.meta;
      const tmp = join(this.dir, `task.json.${process.pid}.tmp`);
      await writeFile(tmp, JSON.stringify(meta), { mode: STORE_FILE_MODE });
      await rename(tmp, join(this.dir, "task.json"));
      this.savedAccessAt = meta.lastAccessAt;
    });
    this.metaChain = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    await this.writeChain;
    await this.pieceLog.close();
    const fh = this.fh;
    this.fh = undefined;
    this.opening = undefined;
    await fh?.close().catch(() => undefined);
  }

  // Parses pieces.log (see PieceLog).
  static readonly parseLog = PieceLog.parse;
}

// The chunks left after the first `n` bytes (a short write).
function dropBytes(chunks: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < chunks.length && n >= chunks[i]!.length) n -= chunks[i++]!.length;
  if (i === chunks.length) return [];
  return n === 0 ? chunks.slice(i) : [chunks[i]!.subarray(n), ...chunks.slice(i + 1)];
}
