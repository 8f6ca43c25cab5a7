// The pure parts of s3:// and hf:// preheats: the API's argument checks, the
// CLI's exit code of a failed job, the shared path and glob selection, and
// the bound on a listing page.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { failureCode } from "../../src/cli/preheat.js";
import { relativeUnder, wantedPath } from "../../src/common/object-listing.js";
import { readTextCapped } from "../../src/common/streams.js";
import { checkObjectArgs, schedulersFor } from "../../src/manager/jobs/object-resolver.js";

test("checkObjectArgs: recursive URLs, globs and hub fields only where they apply", () => {
  checkObjectArgs({ type: "file", url: "s3://b/k.bin" });
  checkObjectArgs({ type: "file", url: "s3://b/prefix/", recursive: true, include: ["*.bin"] });
  checkObjectArgs({ type: "file", url: "hf://acme/m", recursive: true, hf_revision: "v1", hf_token: "t" });
  checkObjectArgs({ type: "file", url: "hf://datasets/acme/d/train/x.parquet" });
  checkObjectArgs({ type: "file", url: "https://example.com/x" });
  const bad: [Parameters<typeof checkObjectArgs>[0], string][] = [
    [{ type: "file", url: "s3://b/prefix/" }, "DF_ERR_INVALID_URL"],
    [{ type: "file", url: "hf://acme/m" }, "DF_ERR_INVALID_URL"],
    [{ type: "file", url: "hf://acme/m/../x", recursive: true }, "DF_ERR_INVALID_URL"],
    [{ type: "file", url: "s3://b/k", include: ["*"] }, "DF_ERR_USAGE"],
    [{ type: "file", url: "s3://b/k", hf_token: "t" }, "DF_ERR_USAGE"],
    [{ type: "image", url: "hf://acme/m/x" }, "DF_ERR_USAGE"],
    [{ type: "file", url: "https://example.com/x", recursive: true }, "DF_ERR_USAGE"],
    [{ type: "file", url: "https://example.com/x", hf_revision: "main" }, "DF_ERR_USAGE"],
  ];
  for (const [args, code] of bad) assert.throws(() => checkObjectArgs(args), { code }, JSON.stringify(args));
});

test("failureCode: the job's own code, else the code every failed task shares, else DF_ERR_JOB_FAILED", () => {
  assert.equal(failureCode("DF_ERR_SOURCE_NOT_FOUND: s3://b: no such bucket", []), "DF_ERR_SOURCE_NOT_FOUND");
  const tasks = (...d: string[]) => [{ failure_tasks: d.map((description) => ({ description })) }];
  assert.equal(failureCode("2 task(s) failed", tasks("DF_ERR_SOURCE_AUTH: a", "DF_ERR_SOURCE_AUTH: b")), "DF_ERR_SOURCE_AUTH");
  assert.equal(failureCode("2 task(s) failed", tasks("DF_ERR_SOURCE_AUTH: a", "DF_ERR_TIMEOUT: b")), "DF_ERR_JOB_FAILED");
  assert.equal(failureCode("1 task(s) failed", tasks("something odd")), "DF_ERR_JOB_FAILED");
  assert.equal(failureCode("DF_ERR_NOT_A_CODE: x", []), "DF_ERR_JOB_FAILED");
});

test("relativeUnder and wantedPath: the folder's plain relative paths, globs on them (a glob without '/' also on the name)", () => {
  assert.equal(relativeUnder("llm/w/a.bin", "llm"), "w/a.bin");
  assert.equal(relativeUnder("llm2/a.bin", "llm"), undefined);
  for (const bad of ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "a/\n"]) assert.equal(relativeUnder(bad, ""), undefined, JSON.stringify(bad));
  assert.equal(wantedPath("w/a.safetensors", ["*.safetensors"], []), true);
  assert.equal(wantedPath("w/a.safetensors", ["w/*"], ["*.safetensors"]), false);
  assert.equal(wantedPath("config.json", ["w/*"], []), false);
  assert.equal(wantedPath("config.json", [], []), true);
});

test("readTextCapped: a page up to the bound; past it DF_ERR_SOURCE_PROTOCOL", async () => {
  const page = (n: number) => Readable.from([Buffer.alloc(n, 0x61), Buffer.alloc(n, 0x62)]);
  assert.equal(await readTextCapped(page(4), 8, "page"), "aaaabbbb");
  await assert.rejects(readTextCapped(page(5), 8, "page"), { code: "DF_ERR_SOURCE_PROTOCOL" });
});

test("schedulersFor: a download with the hub token goes over mutual TLS, else only to a loopback scheduler", () => {
  const all = [{ ip: "127.0.0.1" }, { ip: "10.0.0.7" }, { ip: "::1" }];
  assert.deepEqual(schedulersFor(all, { secret: true }, false), [{ ip: "127.0.0.1" }, { ip: "::1" }]);
  assert.deepEqual(schedulersFor(all, { secret: true }, true), all);
  assert.deepEqual(schedulersFor(all, {}, false), all);
});
