import { test } from "node:test";
import assert from "node:assert/strict";
import { redactUrl, urlForMessages, withoutRedacted } from "../../src/common/url-redact.js";

test("redactUrl blanks secret query values and passwords, keeps the rest", () => {
  assert.equal(
    redactUrl("https://acct.blob.core.windows.net/c/b?sv=2022&SIG=abc%2B&x-amz-security-token=t&part=1#frag"),
    "https://acct.blob.core.windows.net/c/b?sv=2022&SIG=REDACTED&x-amz-security-token=REDACTED&part=1",
  );
  assert.equal(redactUrl("https://u:pw@h.example/p?access_token=x"), "https://u:REDACTED@h.example/p?access_token=REDACTED");
  assert.equal(redactUrl("https://h.example/p?a=1&b=2"), "https://h.example/p?a=1&b=2");
  assert.equal(redactUrl("not a url"), "");
});

test("withoutRedacted drops what redactUrl blanked, so a repair never sends REDACTED", () => {
  const stored = redactUrl("https://h.example/p?sig=abc&token=t&part=1");
  assert.equal(withoutRedacted(stored), "https://h.example/p?part=1");
  // A parameter that is genuinely "REDACTED" under another name is kept.
  assert.equal(withoutRedacted("https://h.example/p?mode=REDACTED"), "https://h.example/p?mode=REDACTED");
});

test("messages show no query string at all", () => {
  assert.equal(urlForMessages(new URL("https://h.example/p?custom-secret=1")), "https://h.example/p?…");
});
