// The whole-set progress of `get -r`: counts, speed over a window and ETA on
// an injected clock (no wall time), the line it draws, and the display on a
// fake terminal (per-file lines above the bar; nothing when not a TTY).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { formatSetLine, SetDisplay, SetProgress } from "../../src/cli/set-progress.js";

const MiB = 1024 * 1024;

function clock() {
  let t = 1_000;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

test("files and bytes done of the total; a file already present is done but not speed", () => {
  const c = clock();
  const p = new SetProgress([4 * MiB, 2 * MiB, 10, -1], c);
  assert.deepEqual(p.snapshot(), { filesDone: 0, filesTotal: 4, bytesDone: 0, bytesTotal: 6 * MiB + 10, bytesPerSec: 0, etaSecs: undefined });
  p.skip(2, 10);
  c.advance(1_000);
  p.progress(0, 1 * MiB, 4 * MiB);
  let s = p.snapshot();
  assert.equal(s.filesDone, 1);
  assert.equal(s.bytesDone, MiB + 10);
  // 1 MiB moved in the 1 s since the start; the 10 present bytes are not speed.
  assert.equal(s.bytesPerSec, MiB);
  // The file of unknown size counts once the daemon reports its length.
  p.progress(3, 0, 3 * MiB);
  s = p.snapshot();
  assert.equal(s.bytesTotal, 9 * MiB + 10);
  assert.equal(s.etaSecs, (9 * MiB + 10 - (MiB + 10)) / MiB);
  p.finish(0, 4 * MiB);
  p.finish(1, 2 * MiB);
  p.finish(3, 3 * MiB);
  s = p.snapshot();
  assert.deepEqual([s.filesDone, s.bytesDone, s.bytesTotal, s.etaSecs], [4, 9 * MiB + 10, 9 * MiB + 10, 0]);
  // A late report for a finished file changes nothing.
  p.progress(0, 5, 4 * MiB);
  assert.equal(p.snapshot().bytesDone, 9 * MiB + 10);
});

test("no ETA from a few bytes: it waits for 1 MiB (or 1% of the set) moved in the window", () => {
  const c = clock();
  const p = new SetProgress([3, 4000 * MiB], c);
  c.advance(500);
  p.finish(0, 3);
  const s = p.snapshot();
  assert.ok(s.bytesPerSec > 0);
  assert.equal(s.etaSecs, undefined);
  c.advance(1_000);
  p.progress(1, MiB, 4000 * MiB);
  assert.equal(Math.round(p.snapshot().etaSecs ?? -1), Math.round((3999 * MiB * 1.5) / (MiB + 3)));
  // A small set: 1% of it is enough.
  const small = new SetProgress([100 * 1024], c);
  c.advance(1_000);
  small.progress(0, 2048, 100 * 1024);
  assert.equal(small.snapshot().etaSecs, 49);
});

test("speed is over the last ten seconds: a stall lowers it, the ETA follows", () => {
  const c = clock();
  const p = new SetProgress([100 * MiB], c);
  // 2 MiB/s for 20 s.
  for (let sec = 1; sec <= 20; sec++) {
    c.advance(1_000);
    p.progress(0, sec * 2 * MiB, 100 * MiB);
  }
  let s = p.snapshot();
  assert.equal(s.bytesPerSec, 2 * MiB);
  assert.equal(s.etaSecs, 30);
  // Then 5 s without a byte: 10 MiB over the last 10 s.
  c.advance(5_000);
  s = p.snapshot();
  assert.equal(s.bytesPerSec, MiB);
  assert.equal(s.etaSecs, 60);
  // A download begun again from 0 does not count its bytes twice as speed.
  p.progress(0, 0, 100 * MiB);
  c.advance(1_000);
  p.progress(0, 1 * MiB, 100 * MiB);
  assert.equal(p.snapshot().bytesDone, MiB);
});

test("the line: bar, percent, files, bytes, speed, ETA (no ETA once every file is done)", () => {
  const line = formatSetLine({ filesDone: 3, filesTotal: 10, bytesDone: 120 * MiB, bytesTotal: 300 * MiB, bytesPerSec: 52 * MiB, etaSecs: 3.4 }, 10);
  assert.equal(line, "[====      ]  40% | 3/10 files | 120.0 MiB / 300.0 MiB | 52.0 MiB/s | ETA 4s");
  const done = formatSetLine({ filesDone: 2, filesTotal: 2, bytesDone: 0, bytesTotal: 0, bytesPerSec: 0, etaSecs: 0 }, 4);
  assert.equal(done, "[====] 100% | 2/2 files | 0 B / 0 B | 0 B/s");
});

function sink(isTTY: boolean): Writable & { isTTY: boolean; columns: number; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return Object.assign(w, { isTTY, columns: 120, text: () => chunks.join("") });
}

test("on a terminal: one line for the set, per-file lines printed above it, all flushed at stop", () => {
  const tty = sink(true);
  const p = new SetProgress([MiB, MiB]);
  const d = new SetDisplay(tty, true, p);
  assert.notEqual(d.lines, tty);
  p.finish(0, MiB);
  d.lines.write("damselfly get: 1.0 MiB -> /out/a\n");
  d.stop();
  const out = tty.text();
  assert.match(out, /1\/2 files \| 1\.0 MiB \/ 2\.0 MiB/);
  assert.match(out, /damselfly get: 1\.0 MiB -> \/out\/a\n/);
});

test("not a terminal, or --no-progress: no display, per-file lines go straight to the stream", () => {
  for (const [isTTY, enabled] of [
    [false, true],
    [true, false],
  ] as const) {
    const s = sink(isTTY);
    const d = new SetDisplay(s, enabled, new SetProgress([1]));
    assert.equal(d.lines, s);
    d.lines.write("line\n");
    d.stop();
    assert.equal(s.text(), "line\n");
  }
});
