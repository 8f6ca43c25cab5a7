// Read gathering on piece connections (docs/decisions/piece-read-gathering.md):
// without TLS a small read pauses the connection at once; over TLS, where a
// read is one record whatever waits in the kernel, what one wake-up brought
// decides, once that burst of records is over.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { PieceResponse, type PieceTarget } from "../../src/peer/download/piece-response.js";
import type { PieceRequest } from "../../src/peer/download/piece-client.js";
import { MemorySink } from "../../src/peer/download/piece-writer.js";

const KiB = 1024;
const LENGTH = 4 * 1024 * KiB;

function harness(tlsReads: boolean) {
  const calls: string[] = [];
  const req: PieceRequest & { paused: boolean } = {
    paused: false,
    pause() {
      this.paused = true;
      calls.push("pause");
    },
    resume() {
      this.paused = false;
      calls.push("resume");
    },
    abort() {
      calls.push("abort");
    },
  };
  const t: PieceTarget = {
    parentId: "parent",
    n: 0,
    offset: 0,
    ad: { crc: 0, length: LENGTH },
    sink: new MemorySink(0, LENGTH),
    reads: undefined,
    throttle: undefined,
    tlsReads,
  };
  const r = new PieceResponse(t, { got() {}, forget() {}, resolve() {}, reject() {} }, undefined);
  r.send(() => req);
  r.onStart(200, LENGTH);
  const record = Buffer.alloc(16 * KiB, 1);
  return { calls, read: (records: number) => Array.from({ length: records }, () => r.onData(record)) };
}

test("without TLS a small read pauses the connection to gather", () => {
  const h = harness(false);
  h.read(1);
  assert.deepEqual(h.calls, ["pause"]);
});

test("over TLS a small burst of records pauses once, after the burst", async () => {
  const h = harness(true);
  h.read(3);
  assert.deepEqual(h.calls, [], "no pause while the burst's records are still coming");
  await nextMacrotask();
  assert.deepEqual(h.calls, ["pause"]);
});

test("over TLS a burst of at least the gathering size keeps reading", async () => {
  const h = harness(true);
  h.read(16);
  await nextMacrotask();
  assert.deepEqual(h.calls, []);
});
