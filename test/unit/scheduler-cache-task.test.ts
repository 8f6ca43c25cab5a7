// The scheduler and imported tasks (no origin): once a registration proved
// the task's digest (its ID is made of it), nobody is sent to an origin for
// it, whatever the peer asks or whichever host it is on, no seed is
// triggered while nobody holds it, and a download nobody can serve fails
// (DF_ERR_TASK_NOT_FOUND) instead of waiting forever.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { CACHE_URL, cacheTaskId, fromErrorDetail } from "../../src/protocol/index.js";
import type { Host } from "../../src/scheduler/resources/host-manager.js";
import { announceTestHost, TestPeer } from "../helpers/announce-peer.js";
import { startTlsScheduler } from "../helpers/scheduler-tls.js";

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

for (const coldStart of ["seed", "peer"] as const) {
  test(`cold start ${coldStart}: an imported task nobody holds sends no peer and no seed to an origin; it fails`, { timeout: 20_000 }, async () => {
    const triggered: string[] = [];
    const started = await startTlsScheduler(undefined, cleanups, { coldStart, seedWait: 1000 }, { trigger: async (h: Host) => void triggered.push(h.id) });
    const client = await started.client("peer", "test");
    await announceTestHost(client, "seed-a", true);
    await announceTestHost(client, "hn");
    const digest = `sha256:${randomBytes(32).toString("hex")}`;
    const id = cacheTaskId(digest);
    // A peer that does not forbid the origin itself (an old or hostile client).
    const n = new TestPeer(client, cleanups, "hn", id, "pn");
    n.register({ url: CACHE_URL, digest });
    const s = new TestPeer(client, cleanups, "seed-a", id, "ps");
    s.register({ url: CACHE_URL, digest });
    for (const p of [n, s]) {
      const failed = await p.expect("taskFailed", 10_000);
      assert.equal(fromErrorDetail(failed.error).code, "DF_ERR_TASK_NOT_FOUND");
    }
    assert.deepEqual(triggered, [], "no seed triggered for a task it could only copy");
  });
}

test("a URL download under an imported task's ID is not taken for one (the digest must make the ID)", { timeout: 20_000 }, async () => {
  const started = await startTlsScheduler(undefined, cleanups, { coldStart: "peer" });
  const client = await started.client("peer", "test");
  await announceTestHost(client, "hn");
  const digest = `sha256:${randomBytes(32).toString("hex")}`;
  const other = `sha256:${randomBytes(32).toString("hex")}`;
  const n = new TestPeer(client, cleanups, "hn", cacheTaskId(digest), "pn");
  // Claims the pseudo-URL with another digest: not this task's, so the
  // scheduler keeps treating it as an ordinary one.
  n.register({ url: CACHE_URL, digest: other });
  await n.expect("needBackToSource");
});
