import { crc32 } from "node:zlib";

export const MIN_PIECE_LENGTH = 512 * 1024;
export const MAX_PIECE_LENGTH = 64 * 1024 * 1024;
// Pieces a file is split into before the length starts to grow.
const TARGET_PIECE_COUNT = 500;

// Piece length = next power of two of (content length / 500), clamped to
// 512 KiB..64 MiB. A peer can pass a piece on only once it holds all of it,
// so on slow links big pieces leave uplinks idle while the first copies crawl
// in: small pieces finish sooner for a little more CPU per byte
// (docs/decisions/piece-length.md). Huge files keep the piece count (and
// per-piece overhead) bounded.
export function pieceLengthFor(contentLength: number): number {
  const raw = Math.ceil(contentLength / TARGET_PIECE_COUNT);
  let p = MIN_PIECE_LENGTH;
  while (p < raw && p < MAX_PIECE_LENGTH) p *= 2;
  return p;
}

export function pieceCount(contentLength: number, pieceLength: number): number {
  return contentLength === 0 ? 0 : Math.ceil(contentLength / pieceLength);
}

export function pieceRange(number: number, contentLength: number, pieceLength: number): { offset: number; length: number } {
  const offset = number * pieceLength;
  return { offset, length: Math.max(0, Math.min(pieceLength, contentLength - offset)) };
}

// CRC-32 (IEEE), incremental: pass the previous value to continue.
export function crc32Update(data: Uint8Array, prev = 0): number {
  return crc32(data, prev) >>> 0;
}
