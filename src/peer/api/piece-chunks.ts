// A task's bytes for a proxied response or a streamed download, in buffers of
// at most CHUNK bytes whatever the piece length. Reading whole pieces holds
// a piece per buffer in flight: a 10 GiB file has 32 MiB pieces, so the
// socket's piece and the one read ahead cost 64 MiB, 128 MiB at the 64 MiB
// maximum, and took the daemon past its 200 MiB bound
// (bench/results/2026-12-07-model.md). A large piece is CRC-checked first,
// streaming through one chunk buffer (unless this process verified it on
// receipt moments ago), then read again chunk by chunk as it is sent: the
// page cache serves the second read.
import { crc32Update } from "../../common/pieces.js";
import { waitForInfo, waitForPiece } from "./task-reader.js";
import type { LocalTask } from "../storage/local-task.js";
import type { DamselflyError } from "../../common/errors.js";

export const CHUNK = 4 * 1024 * 1024;

export interface ChunkPool {
  // A buffer of exactly `size` bytes.
  get(size: number): Buffer;
  // Takes back one that never left this module (the CRC pass's scratch).
  put(buf: Buffer): void;
}

// Yields [start, end) of the task in order, waiting for pieces still
// downloading; a corrupt piece is dropped and refetched through `restart`.
export async function* readTaskChunks(
  task: LocalTask,
  signal: AbortSignal,
  restart: () => Promise<void>,
  start: number,
  end: number,
  pool: ChunkPool,
): AsyncGenerator<Buffer> {
  await waitForInfo(task, signal);
  const stop = Math.min(end, task.meta.contentLength);
  const pl = task.meta.pieceLength;
  for (let pos = start; pos < stop; ) {
    const n = Math.floor(pos / pl);
    const to = Math.min(stop, (n + 1) * pl);
    if (pl <= CHUNK) {
      const piece = await verifiedPiece(task, n, signal, restart, pool.get(pl));
      yield piece.subarray(pos - n * pl, to - n * pl);
    } else {
      await verifyPiece(task, n, signal, restart, pool);
      for (let at = pos; at < to; ) {
        const len = Math.min(CHUNK, to - at);
        yield await task.read(at, len, pool.get(CHUNK).subarray(0, len));
        at += len;
      }
    }
    pos = to;
  }
}

async function verifiedPiece(task: LocalTask, n: number, signal: AbortSignal, restart: () => Promise<void>, into: Buffer): Promise<Buffer> {
  for (;;) {
    await waitForPiece(task, n, signal);
    try {
      return await task.readVerifiedPiece(n, into);
    } catch (err) {
      if ((err as DamselflyError).code !== "DF_ERR_PIECE_CORRUPT") throw err;
      await restart();
    }
  }
}

// Checks piece n's CRC-32 reading CHUNK bytes at a time (readVerifiedPiece's
// check without holding the piece).
async function verifyPiece(task: LocalTask, n: number, signal: AbortSignal, restart: () => Promise<void>, pool: ChunkPool): Promise<void> {
  for (;;) {
    await waitForPiece(task, n, signal);
    const info = task.pieces.get(n);
    if (!info) continue;
    if (task.isFresh(n)) return;
    const { offset } = task.pieceRange(n);
    const scratch = pool.get(CHUNK);
    let crc = 0;
    try {
      for (let i = 0; i < info.length; i += CHUNK) {
        const len = Math.min(CHUNK, info.length - i);
        crc = crc32Update(await task.read(offset + i, len, scratch.subarray(0, len)), crc);
      }
    } finally {
      pool.put(scratch);
    }
    if (crc === info.crc) return;
    // As readVerifiedPiece does: drop it, then have it fetched again.
    await task.invalidatePiece(n);
    await restart();
  }
}
