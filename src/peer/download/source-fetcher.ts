import { DamselflyError } from "../../common/errors.js";
import { MIN_PIECE_LENGTH, pieceLengthFor } from "../../common/pieces.js";
import type { LocalTask } from "../storage/local-task.js";
import type { Source } from "../source/source.js";
import { PieceWriter } from "./piece-writer.js";
import type { Throttle } from "../../common/token-bucket.js";

export interface SourceFetchHooks {
  // Called once the origin told us the size (or that it will not).
  onInfo(contentLength: number, pieceLength: number, known: boolean): Promise<void> | void;
  // `sha256`: the piece's digest, when signs() asked for it.
  onPiece(n: number, crc: number, length: number, costMicros: number, sha256?: string): Promise<void> | void;
  // Hash each piece with SHA-256 too (this peer signs what it fetches).
  signs?(): boolean;
  // Pieces another source (a parent) finished meanwhile are not rewritten.
  isDone(n: number): boolean;
  // Every byte written, in arrival order, at its offset in the file.
  onBytes?(offset: number, chunk: Uint8Array): void;
}

const RETRIES = 3;

// One back-to-source run: where to fetch, where to store, whom to tell.
export interface SourceJob {
  source: Source;
  task: LocalTask;
  url: string;
  // Passed to the origin only (may carry credentials).
  headers: Record<string, string>;
  // Zero: derive from the content length.
  userPieceLength: number;
  hooks: SourceFetchHooks;
  signal: AbortSignal;
  // Rate limits the origin's bytes count against; over them, the body is not
  // read on (the origin's TCP window closes).
  throttle?: Throttle | undefined;
}

// Back-to-source: pulls the missing pieces from the origin in as few requests
// as possible (one Range request per run of missing pieces), resuming at the
// piece boundary where a broken response stopped.
export async function fetchFromSource(job: SourceJob): Promise<void> {
  const { task, hooks, signal } = job;
  if (!task.infoKnown) {
    try {
      await fetchWhole(job);
    } catch (err) {
      // A response that broke off is resumed below with Range requests, from
      // the first missing piece; anything else is final.
      const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
      if (!e.temporary || !task.infoKnown || signal.aborted) throw e;
    }
  }
  for (let attempt = 0; ; attempt++) {
    const runs = missingRuns(task, hooks);
    if (runs.length === 0) return;
    try {
      for (const [first, last] of runs) await fetchRun(job, first, last);
    } catch (err) {
      const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
      if (!e.temporary || attempt >= RETRIES || signal.aborted) throw e;
    }
  }
}

function missingRuns(task: LocalTask, hooks: SourceFetchHooks): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (let n = 0; n < task.totalPieces; n++) {
    if (hooks.isDone(n)) continue;
    const last = runs[runs.length - 1];
    if (last && last[1] === n - 1) last[1] = n;
    else runs.push([n, n]);
  }
  return runs;
}

async function fetchRun({ source, task, url, headers, hooks, signal, throttle }: SourceJob, first: number, last: number): Promise<void> {
  const start = task.pieceRange(first).offset;
  const end = task.pieceRange(last).offset + task.pieceRange(last).length - 1;
  const full = start === 0 && end === task.meta.contentLength - 1;
  const res = await source.fetch(url, headers, full ? undefined : { start, end }, signal);
  if (!full && !res.ranged) {
    // The origin ignores ranges: read from the start, skipping what we have.
    await consume(res.body, task, 0, first, last, hooks, task.meta.pieceLength, throttle, signal);
    return;
  }
  if (res.totalLength >= 0 && res.totalLength !== task.meta.contentLength) {
    res.body.destroy();
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `origin object changed size (${task.meta.contentLength} -> ${res.totalLength})`);
  }
  await consume(res.body, task, start, first, last, hooks, task.meta.pieceLength, throttle, signal);
}

async function fetchWhole({ source, task, url, headers, userPieceLength, hooks, signal, throttle }: SourceJob): Promise<void> {
  const res = await source.fetch(url, headers, undefined, signal);
  const known = res.contentLength >= 0;
  // A piece length the task has already (asked for, or a parent's) stays.
  const pieceLength = task.meta.pieceLength || userPieceLength || (known ? pieceLengthFor(res.contentLength) : MIN_PIECE_LENGTH);
  await hooks.onInfo(known ? res.contentLength : -1, pieceLength, known);
  if (known && res.contentLength === 0) {
    res.body.destroy();
    return;
  }
  const lastPiece = known ? Math.ceil(res.contentLength / pieceLength) - 1 : Number.MAX_SAFE_INTEGER;
  const total = await consume(res.body, task, 0, 0, lastPiece, hooks, pieceLength, throttle, signal);
  if (!known) await hooks.onInfo(total, pieceLength, true);
  else if (total !== res.contentLength)
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `origin response ended after ${total} of ${res.contentLength} bytes`, { temporary: true });
}

// Reads a body that starts at byte `bodyStart`, writing pieces first..last.
// Returns the absolute offset reached.
async function consume(
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown },
  task: LocalTask,
  bodyStart: number,
  first: number,
  last: number,
  hooks: SourceFetchHooks,
  pieceLength: number,
  throttle?: Throttle,
  signal?: AbortSignal,
): Promise<number> {
  let pos = bodyStart;
  let n = Math.floor(pos / pieceLength);
  const limit = task.infoKnown ? task.meta.contentLength : Number.MAX_SAFE_INTEGER;
  const pieceEnd = (k: number) => Math.min((k + 1) * pieceLength, limit);
  let writer: PieceWriter | undefined;
  const startedAt = new Map<number, bigint>();
  const open = (k: number) => {
    startedAt.set(k, process.hrtime.bigint());
    if (k < first || k > last || hooks.isDone(k)) return undefined;
    return new PieceWriter(task, k * pieceLength, pieceEnd(k) - k * pieceLength, undefined, hooks.signs?.() ?? false);
  };
  writer = open(n);
  const finish = async (k: number, w: PieceWriter | undefined, length: number) => {
    if (!w) return;
    await w.flush();
    if (w.received !== length) throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `origin response ended inside piece ${k}`, { temporary: true });
    await hooks.onPiece(k, w.crc, length, Number(process.hrtime.bigint() - (startedAt.get(k) ?? 0n)) / 1000, w.hashing ? w.sha256() : undefined);
    startedAt.delete(k);
  };
  // Finished pieces are flushed and reported while the next one streams in;
  // at most two wait at a time.
  const finishing: Array<Promise<void>> = [];
  const settle = async (all: boolean) => {
    while (finishing.length > (all ? 0 : 2)) await finishing.shift();
  };
  try {
    for await (const chunk of body) {
      if (throttle && !throttle.take(chunk.length)) await throttle.waitAsync(signal);
      let off = 0;
      while (off < chunk.length) {
        const boundary = pieceEnd(n);
        const take = Math.min(chunk.length - off, boundary - pos);
        if (take <= 0) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", "origin sent more bytes than announced");
        if (writer) {
          const part = chunk.subarray(off, off + take);
          await writer.push(part);
          hooks.onBytes?.(pos, part);
        }
        off += take;
        pos += take;
        if (pos === boundary) {
          const p = finish(n, writer, boundary - n * pieceLength);
          p.catch(() => undefined);
          finishing.push(p);
          await settle(false);
          n++;
          if (n > last) {
            body.destroy();
            await settle(true);
            return pos;
          }
          writer = open(n);
        }
      }
    }
    await settle(true);
  } catch (err) {
    body.destroy();
    await Promise.allSettled(finishing);
    throw brokeOff(err, pos);
  }
  // Unknown length: the tail piece ends with the body.
  if (!task.infoKnown && writer && writer.received > 0) {
    const len = writer.received;
    await finish(n, writer, len);
  }
  return pos;
}

// What an error while reading the origin's body at byte `pos` means. Local
// trouble (a full disk) keeps its own code; anything else is the response
// breaking off, worth resuming.
function brokeOff(err: unknown, pos: number): DamselflyError {
  if (err instanceof DamselflyError) return err;
  const local = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
  if (local.code !== "DF_ERR_SOURCE_UNREACHABLE" && local.code !== "DF_ERR_TIMEOUT") return local;
  return new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `origin response broke off at byte ${pos}: ${(err as Error).message}`, {
    cause: err,
    temporary: true,
  });
}
