// The path checks of `get -r`: a listed key or path never names a file
// outside the output directory (a hostile bucket or repository).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseHfFolder, safeRelative } from "../../src/cli/get-recursive.js";

test("safeRelative keeps paths under the folder and refuses escapes and odd keys", () => {
  const dir = "/out";
  assert.equal(safeRelative("llm/a/b.bin", "llm", dir), "a/b.bin");
  assert.equal(safeRelative("a/b.bin", "", dir), "a/b.bin");
  assert.equal(safeRelative("llm2/x", "llm", dir), undefined);
  for (const bad of ["../evil", "a/../../evil", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", "a/b\u0000", "a/\n", ""]) {
    assert.equal(safeRelative(bad, "", dir), undefined, JSON.stringify(bad));
  }
  assert.equal(safeRelative("llm/../evil", "llm", dir), undefined);
});

test("parseHfFolder: a repository or a folder of one, of each kind", () => {
  assert.deepEqual(parseHfFolder("hf://acme/m"), { kind: "models", urlPrefix: "", repo: "acme/m", folder: "" });
  assert.deepEqual(parseHfFolder("hf://datasets/acme/d/train/"), { kind: "datasets", urlPrefix: "datasets/", repo: "acme/d", folder: "train" });
  assert.throws(() => parseHfFolder("hf://acme"), { code: "DF_ERR_INVALID_URL" });
  assert.throws(() => parseHfFolder("hf://acme/m/../x"), { code: "DF_ERR_INVALID_URL" });
});
