// s3:// URLs: parsing, addressing (virtual-hosted or path style, endpoint
// precedence), credentials from the standard AWS sources, and the task tag
// that keys an object by its ETag or version.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findCredentials, loadCredentials, objectUrl, parseS3Url } from "../../src/common/s3/s3-config.js";
import { presignSeconds, s3TaskTag } from "../../src/common/s3/s3-resolve.js";
import { taskId } from "../../src/common/task-id.js";

const NO_ENV = { AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };

test("parseS3Url takes one object, refuses prefixes and bare buckets", () => {
  assert.deepEqual(parseS3Url("s3://models/llm/w 1.bin"), { bucket: "models", key: "llm/w 1.bin" });
  for (const bad of ["s3://models", "s3://models/", "s3://models/dir/", "s3:///key"]) {
    assert.throws(() => parseS3Url(bad), /DF_ERR_INVALID_URL|expected s3:\/\/BUCKET\/KEY/, bad);
  }
});

test("objectUrl: AWS virtual-hosted by default, path style when asked or for an IP endpoint", () => {
  const loc = { bucket: "models", key: "a/b c+d.bin" };
  const aws = objectUrl(loc, { endpoint: "", region: "eu-west-1", pathStyle: false }, {});
  assert.equal(aws.url.toString(), "https://models.s3.eu-west-1.amazonaws.com/a/b%20c%2Bd.bin");
  assert.equal(aws.region, "eu-west-1");
  const minio = objectUrl(loc, { endpoint: "https://minio.example:9000", region: "", pathStyle: true }, {});
  assert.equal(minio.url.toString(), "https://minio.example:9000/models/a/b%20c%2Bd.bin");
  assert.equal(minio.region, "us-east-1");
  const ip = objectUrl(loc, { endpoint: "http://127.0.0.1:9000", region: "", pathStyle: false }, {});
  assert.equal(ip.url.pathname, "/models/a/b%20c%2Bd.bin");
});

test("objectUrl: flag, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; region from AWS_REGION", () => {
  const loc = { bucket: "b", key: "k" };
  const env = { AWS_ENDPOINT_URL_S3: "http://10.0.0.1:1", AWS_ENDPOINT_URL: "http://10.0.0.2:2", AWS_REGION: "ap-south-1" };
  assert.equal(objectUrl(loc, { endpoint: "http://10.0.0.3:3", region: "", pathStyle: true }, env).url.host, "10.0.0.3:3");
  assert.equal(objectUrl(loc, { endpoint: "", region: "", pathStyle: true }, env).url.host, "10.0.0.1:1");
  assert.equal(objectUrl(loc, { endpoint: "", region: "", pathStyle: true }, { AWS_ENDPOINT_URL: "http://10.0.0.2:2" }).url.host, "10.0.0.2:2");
  assert.equal(objectUrl(loc, { endpoint: "", region: "", pathStyle: true }, env).region, "ap-south-1");
  assert.throws(() => objectUrl(loc, { endpoint: "ftp://x", region: "", pathStyle: true }, {}), /DF_ERR_INVALID_URL|not http/);
});

test("credentials: env first, then the profile of the shared credentials file", () => {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-awscreds-"));
  try {
    const file = join(dir, "credentials");
    writeFileSync(
      file,
      "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n[ci]\naws_access_key_id=CI\naws_secret_access_key=cisecret\naws_session_token=tok\n",
    );
    assert.deepEqual(findCredentials({ AWS_ACCESS_KEY_ID: "ENV", AWS_SECRET_ACCESS_KEY: "s", AWS_SESSION_TOKEN: "t", AWS_SHARED_CREDENTIALS_FILE: file }), {
      accessKeyId: "ENV",
      secretAccessKey: "s",
      sessionToken: "t",
    });
    assert.deepEqual(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: file }), { accessKeyId: "DEF", secretAccessKey: "defsecret" });
    assert.deepEqual(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: "ci" }), {
      accessKeyId: "CI",
      secretAccessKey: "cisecret",
      sessionToken: "tok",
    });
    assert.equal(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: "nope" }), undefined);
    assert.throws(
      () => loadCredentials(NO_ENV),
      (e: Error & { code?: string }) => e.code === "DF_ERR_SOURCE_AUTH",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("task identity: the signature does not count, the ETag does", () => {
  const base = "http://127.0.0.1:9000/models/w.bin";
  const signed = (sig: string) =>
    `${base}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=${sig}`;
  const v1 = s3TaskTag("", 'etag="abc"');
  assert.equal(taskId({ url: signed("aa"), tag: v1 }), taskId({ url: signed("bb"), tag: v1 }));
  assert.notEqual(taskId({ url: signed("aa"), tag: v1 }), taskId({ url: signed("aa"), tag: s3TaskTag("", 'etag="def"') }));
  assert.notEqual(s3TaskTag("team-a", "version=1"), s3TaskTag("", "version=1"));
});

test("presigned URLs outlive a slow back-to-source run of the object, within SigV4's seven days", () => {
  assert.equal(presignSeconds(0), 3600);
  assert.equal(presignSeconds(8 * 1024 * 1024 * 100), 3700);
  // 100 GiB at 8 MiB/s: 12,800 s more than the hour.
  assert.equal(presignSeconds(100 * 1024 ** 3), 3600 + 12_800);
  assert.equal(presignSeconds(10 * 1024 ** 4), 7 * 24 * 3600);
});
