// Every stable error code must be documented in README.md.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ERROR_CODES } from "../../src/common/errors.js";
import { REPO_ROOT } from "../helpers/procs.js";

test("every error code appears in README.md", () => {
  let readme: string;
  try {
    readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  } catch (e) {
    assert.fail(`README.md cannot be read: ${(e as Error).message}`);
  }
  const missing = Object.keys(ERROR_CODES).filter((code) => !new RegExp(`\\b${code}\\b`).test(readme));
  assert.deepEqual(missing, [], `error codes missing from README.md: ${missing.join(", ")}`);
});
