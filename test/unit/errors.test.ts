// Every stable error code must be documented in docs/reference/errors.md
// (generated from the table; docs-reference.test.ts checks it is current).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ERROR_CODES } from "../../src/common/errors.js";
import { REPO_ROOT } from "../helpers/procs.js";

test("every error code appears in docs/reference/errors.md", () => {
  let doc: string;
  try {
    doc = readFileSync(join(REPO_ROOT, "docs", "reference", "errors.md"), "utf8");
  } catch (e) {
    assert.fail(`docs/reference/errors.md cannot be read: ${(e as Error).message}`);
  }
  const missing = Object.keys(ERROR_CODES).filter((code) => !new RegExp(`\\b${code}\\b`).test(doc));
  assert.deepEqual(missing, [], `error codes missing from docs/reference/errors.md: ${missing.join(", ")}`);
});
