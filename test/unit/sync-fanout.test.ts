// A task's availability fan-out: every child hears of every new piece exactly
// once, in one line per batch window, including children that joined or were
// caught up mid-batch; the last child leaving stops listening to the task.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { SyncFanout } from "../../src/peer/upload/sync-fanout.js";
import type { LocalTask } from "../../src/peer/storage/local-task.js";

const piece = (n: number) => ({ number: n, crc: 1000 + n, length: 512 });
const heard = (lines: string[]) => lines.flatMap((l) => (JSON.parse(l) as { pieces: number[][] }).pieces.map((p) => p[0]));

test("each child hears of each new piece once, batched, whenever it joined or was caught up", (t) => {
  // The batch window runs on mocked timers: the test moves time, no sleep races it.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  // Only on/off/emit of "piece" are used: an emitter stands in for the task.
  const task = new EventEmitter();
  const fanout = new SyncFanout(task as unknown as LocalTask, 20);
  const a: string[] = [];
  const b: string[] = [];
  const c: string[] = [];
  const ma = fanout.join((l) => a.push(l));
  task.emit("piece", piece(1));
  task.emit("piece", piece(2));
  // b joins now: it was sent pieces 1 and 2 with the task's piece list.
  const mb = fanout.join((l) => b.push(l));
  task.emit("piece", piece(3));
  const mc = fanout.join((l) => c.push(l));
  // A suggestion for c must follow the pieces it names: c is caught up.
  task.emit("piece", piece(4));
  fanout.catchUp(mc);
  assert.deepEqual(heard(c), [4]);
  t.mock.timers.tick(19);
  assert.equal(a.length, 0, "nothing before the window ends");
  t.mock.timers.tick(1);
  assert.deepEqual(heard(a), [1, 2, 3, 4]);
  assert.equal(a.length, 1, "one line for the whole batch");
  assert.deepEqual(heard(b), [3, 4]);
  assert.deepEqual(heard(c), [4], "nothing twice");
  // The next batch: one line, the same for everyone.
  task.emit("piece", piece(5));
  t.mock.timers.tick(20);
  assert.equal(a.at(-1), b.at(-1));
  assert.equal(a.at(-1), c.at(-1));
  assert.deepEqual(heard(a.slice(1)), [5]);
  // Everyone gone: the task is no longer followed, a pending batch dies.
  task.emit("piece", piece(6));
  fanout.leave(ma);
  fanout.leave(mb);
  assert.equal(task.listenerCount("piece"), 1);
  fanout.leave(mc);
  assert.equal(task.listenerCount("piece"), 0);
  t.mock.timers.tick(20);
  assert.deepEqual(
    [a, b, c].map((x) => heard(x).includes(6)),
    [false, false, false],
  );
});
