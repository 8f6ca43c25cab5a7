import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { rendezvousOrder, rendezvousPick } from "../../src/common/rendezvous.js";

// The two hand-written hashes this module replaced, kept here as the
// reference: the shared one must rank exactly as they did (daemons and
// schedulers of mixed versions must agree on a task's scheduler and seed).
function oldPickSeedHost(taskId: string, seeds: readonly { id: string }[]): { id: string } | undefined {
  let best: { id: string } | undefined;
  let bestWeight = "";
  for (const h of seeds) {
    const w = createHash("sha256").update(taskId).update("\0").update(h.id).digest("hex");
    if (best === undefined || w > bestWeight) {
      best = h;
      bestWeight = w;
    }
  }
  return best;
}

function oldOrdered(taskId: string, endpoints: readonly { address: string }[]): { address: string }[] {
  const score = (e: { address: string }) => createHash("sha256").update(taskId).update(e.address).digest().readUInt32BE(0);
  return [...endpoints].sort((a, b) => score(b) - score(a));
}

function taskIds(n: number): string[] {
  return Array.from({ length: n }, () => randomBytes(32).toString("hex"));
}

test("seed choice: the same host as the old pickSeedHost on generated inputs", () => {
  for (let round = 0; round < 50; round++) {
    const seeds = Array.from({ length: 1 + (round % 9) }, (_, i) => ({ id: `${randomBytes(6).toString("hex")}-seed-${i}` }));
    for (const t of taskIds(40)) {
      assert.equal(
        rendezvousPick(t, seeds, (h) => h.id, { separator: "\0" }),
        oldPickSeedHost(t, seeds),
      );
    }
  }
});

test("scheduler order: the same order as the old SchedulerLink.ordered on generated inputs", () => {
  for (let round = 0; round < 50; round++) {
    const endpoints = Array.from({ length: 1 + (round % 6) }, (_, i) => ({ address: `127.0.0.${1 + i}:${8000 + ((round * 7 + i) % 100)}` }));
    for (const t of taskIds(40)) {
      assert.deepEqual(
        rendezvousOrder(t, endpoints, (e) => e.address, { rankBytes: 4 }),
        oldOrdered(t, endpoints),
      );
    }
  }
});

test("equal weights keep input order; no members, no pick", () => {
  const same = [
    { id: "x", n: 1 },
    { id: "x", n: 2 },
  ];
  assert.equal(rendezvousPick("t", same, (m) => m.id)?.n, 1);
  assert.deepEqual(
    rendezvousOrder("t", same, (m) => m.id).map((m) => m.n),
    [1, 2],
  );
  assert.equal(
    rendezvousPick("t", [], (m: { id: string }) => m.id),
    undefined,
  );
  assert.deepEqual(
    rendezvousOrder("t", [], (m: { id: string }) => m.id),
    [],
  );
});

test("pick is the head of the order; removing a member moves only its keys", () => {
  const members = ["a", "b", "c", "d"].map((id) => ({ id }));
  const ids = taskIds(200);
  for (const t of ids)
    assert.equal(
      rendezvousPick(t, members, (m) => m.id),
      rendezvousOrder(t, members, (m) => m.id)[0],
    );
  const before = ids.map((t) => rendezvousPick(t, members, (m) => m.id)!.id);
  const after = ids.map((t) => rendezvousPick(t, members.slice(0, 3), (m) => m.id)!.id);
  for (let i = 0; i < ids.length; i++) if (before[i] !== "d") assert.equal(after[i], before[i]);
});
