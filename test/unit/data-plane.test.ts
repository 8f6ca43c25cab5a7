// The data plane's URL format: what the downloader asks for is what the
// upload server reads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DamselflyError } from "../../src/common/errors.js";
import { childOf, parseDataPlaneUrl, piecePath, syncPath } from "../../src/protocol/data-plane.js";

const TASK = "a".repeat(64);

test("piece and sync paths parse back to what they name, child included", () => {
  for (const child of [undefined, "peer-1_a.b"]) {
    const p = parseDataPlaneUrl(piecePath(TASK, 12, child));
    assert.deepEqual(p && { ...p, child: childOf(p.query) }, { kind: "piece", taskId: TASK, number: 12, query: child && `peer=${child}`, child });
    const s = parseDataPlaneUrl(syncPath(TASK, child));
    assert.deepEqual(s && { ...s, child: childOf(s.query) }, { kind: "sync", taskId: TASK, query: child && `peer=${child}`, child });
  }
});

test("other paths are not the data plane's; a malformed child is an invalid request", () => {
  for (const url of ["/v1/tasks", `/v1/tasks/${TASK}/pieces/x`, `/v1/tasks/${TASK}/pieces/1234567890`, `/v1/tasks/${TASK}/other`, "/healthy"])
    assert.equal(parseDataPlaneUrl(url), undefined, url);
  assert.throws(
    () => childOf("peer=a%20b"),
    (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_INVALID_REQUEST",
  );
  assert.equal(childOf("other=1"), undefined);
});
