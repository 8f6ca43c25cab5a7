import { test } from "node:test";
import assert from "node:assert/strict";
import { DownloadState, canMove } from "../../src/peer/download/download-state.js";

test("a download goes starting -> peers -> source -> verifying -> succeeded", () => {
  const s = new DownloadState();
  assert.equal(s.phase, "starting");
  assert.ok(s.pulling);
  s.to("peers");
  assert.ok(s.pulling);
  s.to("source");
  assert.ok(!s.pulling);
  s.to("source");
  s.to("verifying");
  assert.ok(!s.pulling && !s.ended);
  s.to("succeeded");
  assert.ok(s.ended);
});

test("illegal moves are rejected", () => {
  const s = new DownloadState();
  s.to("failed");
  assert.ok(s.ended);
  assert.throws(() => s.to("peers"), /cannot go from failed to peers/);
  assert.ok(!canMove("verifying", "source"));
  assert.ok(!canMove("peers", "starting"));
  assert.ok(!canMove("succeeded", "failed"));
  assert.ok(!canMove("peers", "succeeded"));
  assert.ok(canMove("verifying", "failed"));
});
