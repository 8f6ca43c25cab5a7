// hf:// URL parsing and the mapping of the Hub's refusals to Damselfly codes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DamselflyError } from "../../src/common/errors.js";
import { hfEndpoint, hfTaskTag, hfToken, hubError, parseHfUrl } from "../../src/common/hf/hf-resolve.js";

test("hf:// URLs: models (bare or models/), datasets/ and spaces/ prefixes, nested paths", () => {
  assert.deepEqual(parseHfUrl("hf://acme/tiny/model.safetensors"), { prefix: "", repo: "acme/tiny", path: "model.safetensors" });
  assert.deepEqual(parseHfUrl("hf://models/acme/tiny/a/b.bin"), { prefix: "", repo: "acme/tiny", path: "a/b.bin" });
  assert.deepEqual(parseHfUrl("hf://datasets/acme/corpus/data/train.bin"), { prefix: "datasets/", repo: "acme/corpus", path: "data/train.bin" });
  assert.deepEqual(parseHfUrl("hf://spaces/acme/demo/app.py"), { prefix: "spaces/", repo: "acme/demo", path: "app.py" });
});

test("hf:// URLs without a file path, or with dot segments, are refused", () => {
  for (const bad of ["hf://acme/tiny", "hf://acme/tiny/", "hf://datasets/acme/corpus/data/", "hf://acme//x", "hf://acme/tiny/../x"]) {
    assert.throws(
      () => parseHfUrl(bad),
      (e: unknown) => e instanceof DamselflyError && e.code === "DF_ERR_INVALID_URL",
      bad,
    );
  }
});

test("the Hub's refusals map to auth and not-found codes", () => {
  const answer = (status: number, code?: string) => ({ status, headers: { "x-error-code": code, "x-error-message": "msg" } });
  assert.equal(hubError(answer(401, "RepoNotFound"), "hf://a/b/c", false).code, "DF_ERR_SOURCE_AUTH");
  assert.equal(hubError(answer(404, "RepoNotFound"), "hf://a/b/c", true).code, "DF_ERR_SOURCE_NOT_FOUND");
  assert.equal(hubError(answer(401, "GatedRepo"), "hf://a/b/c", false).code, "DF_ERR_SOURCE_AUTH");
  assert.equal(hubError(answer(403, "GatedRepo"), "hf://a/b/c", true).code, "DF_ERR_SOURCE_AUTH");
  assert.equal(hubError(answer(404, "RevisionNotFound"), "hf://a/b/c", true).code, "DF_ERR_SOURCE_NOT_FOUND");
  assert.equal(hubError(answer(404, "EntryNotFound"), "hf://a/b/c", true).code, "DF_ERR_SOURCE_NOT_FOUND");
  assert.equal(hubError(answer(503), "hf://a/b/c", true).code, "DF_ERR_SOURCE_STATUS");
});

test("endpoint and token from the flag or the environment", () => {
  assert.equal(hfEndpoint("", {}), "https://huggingface.co");
  assert.equal(hfEndpoint("", { HF_ENDPOINT: "https://mirror.example/" }), "https://mirror.example");
  assert.equal(hfEndpoint("https://flag.example", { HF_ENDPOINT: "https://mirror.example" }), "https://flag.example");
  assert.equal(hfToken({ HF_TOKEN: "a", HUGGING_FACE_HUB_TOKEN: "b" }), "a");
  assert.equal(hfToken({ HUGGING_FACE_HUB_TOKEN: "b" }), "b");
  assert.equal(hfTaskTag("", "abc"), "hf:blob=abc");
  assert.equal(hfTaskTag("t", "abc"), "t\nhf:blob=abc");
});
