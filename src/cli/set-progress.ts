// The whole-set progress of `get -r`: files done of the total, bytes done of
// the total, speed and ETA over every file at once (SetProgress, a model with
// an injected clock), and its one line on a terminal (SetDisplay) with the
// per-file lines printed above it.
import { createRequire } from "node:module";
import { Writable } from "node:stream";
import type { MultiBar } from "cli-progress";
import { formatBytes, formatEta } from "./format.js";

export interface SetClock {
  // Milliseconds, monotonic.
  now(): number;
}

export interface SetSnapshot {
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
  // Bytes downloaded per second over the last SPEED_WINDOW_MS (files already
  // present count as done, never as speed).
  bytesPerSec: number;
  // Seconds left at that speed; undefined while there is no speed to go by.
  etaSecs: number | undefined;
}

// Speed over a sliding window: the rate now, not since the start (a set of
// small files then one large one would otherwise give a stale ETA).
const SPEED_WINDOW_MS = 10_000;
// At most one speed sample this often: the sample list stays short however
// many progress events the files send.
const SAMPLE_EVERY_MS = 250;
// No ETA from less than this much moved in the window (or 1% of the set): a
// few bytes of a small file would promise hundreds of hours.
const MIN_ETA_BYTES = 1024 * 1024;

interface Sample {
  t: number;
  moved: number;
}

export class SetProgress {
  private readonly expected: number[];
  private readonly reported: number[];
  private readonly done: number[];
  private readonly finished: boolean[];
  private filesDone = 0;
  // Bytes downloaded in this run (not the files already present).
  private moved = 0;
  private samples: Sample[];

  // sizes: each file's size from the listing, or -1 when the listing gave none.
  constructor(
    sizes: readonly number[],
    private readonly clock: SetClock = { now: () => performance.now() },
  ) {
    this.expected = sizes.map((s) => Math.max(0, s));
    this.reported = sizes.map(() => 0);
    this.done = sizes.map(() => 0);
    this.finished = sizes.map(() => false);
    this.samples = [{ t: clock.now(), moved: 0 }];
  }

  // File i has `done` of `total` bytes (total 0: not known yet).
  progress(i: number, done: number, total: number): void {
    if (this.finished[i] !== false) return;
    if (total > 0) this.reported[i] = total;
    const before = this.done[i]!;
    // A download begun again (the task streamed after its store file was out
    // of reach) counts again from 0; the bytes moved never go down.
    this.done[i] = Math.max(0, done);
    if (this.done[i]! > before) this.record(this.done[i]! - before);
  }

  // File i fetched in full: `size` bytes.
  finish(i: number, size: number): void {
    if (this.finished[i] !== false) return;
    const before = this.done[i]!;
    this.reported[i] = size;
    this.done[i] = size;
    this.finished[i] = true;
    this.filesDone++;
    if (size > before) this.record(size - before);
  }

  // File i was already present (resume): done, but not downloaded now.
  skip(i: number, size: number): void {
    if (this.finished[i] !== false) return;
    this.reported[i] = Math.max(0, size);
    this.done[i] = Math.max(0, size);
    this.finished[i] = true;
    this.filesDone++;
  }

  snapshot(): SetSnapshot {
    const now = this.clock.now();
    this.prune(now);
    let bytesDone = 0;
    let bytesTotal = 0;
    for (let i = 0; i < this.done.length; i++) {
      bytesDone += this.done[i]!;
      bytesTotal += Math.max(this.expected[i]!, this.reported[i]!, this.done[i]!);
    }
    const first = this.samples[0]!;
    const span = now - first.t;
    const inWindow = this.moved - first.moved;
    const bytesPerSec = span > 0 ? (inWindow * 1000) / span : 0;
    const left = bytesTotal - bytesDone;
    const enough = bytesPerSec > 0 && inWindow >= Math.min(MIN_ETA_BYTES, bytesTotal / 100);
    const etaSecs = left <= 0 ? 0 : enough ? left / bytesPerSec : undefined;
    return { filesDone: this.filesDone, filesTotal: this.done.length, bytesDone, bytesTotal, bytesPerSec, etaSecs };
  }

  private record(bytes: number): void {
    this.moved += bytes;
    const now = this.clock.now();
    const last = this.samples[this.samples.length - 1]!;
    if (now - last.t >= SAMPLE_EVERY_MS) this.samples.push({ t: now, moved: this.moved });
    this.prune(now);
  }

  // Drops samples older than the window, keeping the newest of those as the
  // window's start (so the speed spans the whole window, not less).
  private prune(now: number): void {
    let cut = 0;
    while (cut + 1 < this.samples.length && this.samples[cut + 1]!.t <= now - SPEED_WINDOW_MS) cut++;
    if (cut > 0) this.samples = this.samples.slice(cut);
  }
}

// "[=======       ]  42% | 3/10 files | 120.0 MiB / 300.0 MiB | 52.0 MiB/s | ETA 4s"
export function formatSetLine(s: SetSnapshot, width = 30): string {
  const frac = s.bytesTotal > 0 ? Math.min(1, s.bytesDone / s.bytesTotal) : s.filesTotal > 0 ? s.filesDone / s.filesTotal : 0;
  const filled = Math.round(frac * width);
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const eta = s.etaSecs !== undefined && s.filesDone < s.filesTotal ? ` | ETA ${formatEta(s.etaSecs)}` : "";
  return (
    `[${"=".repeat(filled)}${" ".repeat(width - filled)}] ${pct} | ${s.filesDone}/${s.filesTotal} files | ` +
    `${formatBytes(s.bytesDone)} / ${formatBytes(s.bytesTotal)} | ${formatBytes(s.bytesPerSec)}/s${eta}`
  );
}

// One line for the set on a terminal (stderr), redrawn a few times a second;
// nothing when the stream is not a TTY or --no-progress, as for one file.
export class SetDisplay {
  private bars: MultiBar | undefined;
  // Where the per-file lines go: above the bar on a terminal, else as they are.
  readonly lines: NodeJS.WritableStream;

  constructor(stream: NodeJS.WritableStream & { isTTY?: boolean }, enabled: boolean, model: SetProgress) {
    this.lines = stream;
    if (!enabled || !stream.isTTY) return;
    // Loaded only for a bar on a terminal (scripts and rollouts run without one).
    const { MultiBar: Bars } = createRequire(import.meta.url)("cli-progress") as typeof import("cli-progress");
    // The line is computed at each redraw, so speed and ETA move even while no file reports.
    const bars = new Bars({ stream, format: () => formatSetLine(model.snapshot()), hideCursor: true, clearOnComplete: true, fps: 8 });
    bars.create(1, 0);
    this.bars = bars;
    this.lines = new Writable({
      write(chunk: Buffer | string, _enc, cb) {
        bars.log(String(chunk));
        cb();
      },
    });
  }

  stop(): void {
    // A redraw first: it prints the lines logged since the last one.
    this.bars?.update();
    this.bars?.stop();
    this.bars = undefined;
  }
}
