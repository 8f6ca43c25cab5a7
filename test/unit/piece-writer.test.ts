import { test } from "node:test";
import assert from "node:assert/strict";
import { crc32Update } from "../../src/common/pieces.js";
import { MemorySink, PieceWriter } from "../../src/peer/download/piece-writer.js";

test("a piece written through PieceWriter into memory (an endgame duplicate) keeps every byte in place and its CRC", async () => {
  const base = 3 * 1024 * 1024;
  const data = Buffer.alloc(1024 * 1024 + 17);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
  const sink = new MemorySink(base, data.length);
  const w = new PieceWriter(sink, base, data.length, 64 * 1024);
  for (let i = 0; i < data.length; i += 5000) {
    const chunk = data.subarray(i, Math.min(data.length, i + 5000));
    assert.equal(w.accept(chunk), chunk.length);
    if (w.overWindow) await w.written();
  }
  // Bytes beyond the piece are not taken.
  assert.equal(w.accept(Buffer.from("extra")), 0);
  await w.flush();
  assert.ok(w.complete);
  assert.equal(w.crc, crc32Update(data));
  assert.ok(sink.buf.equals(data));
});
