// A daemon given --hf-endpoint / --s3-endpoint: a `get` that names no
// endpoint of its own (no flag, no HF_ENDPOINT / AWS_ENDPOINT_URL*) lists,
// signs and resolves against the daemon's. A get that names one keeps it.
// The defaults are checked in-process first, so a broken lookup fails here
// and never sends a request to the public hub or AWS.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/common/config.js";
import { getSchema, type GetConfig } from "../../src/common/schemas.js";
import { withSourceDefaults } from "../../src/cli/source-defaults.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { type HubFixture, startHub } from "../helpers/hub.js";
import { randomBytesSeeded } from "../helpers/origin.js";

const MiB = 1024 * 1024;
const weights = randomBytesSeeded(2 * MiB, "defaults-weights");
const S3_DEFAULT = "http://127.0.0.1:9/s3-mirror";

describe("a daemon's s3 and hub defaults", { timeout: 120_000 }, () => {
  let hub: HubFixture;
  let cluster: Cluster;
  let outDir: string;
  const config = (flags: Record<string, unknown> = {}): GetConfig =>
    loadConfig(getSchema, { envPrefix: "DAMSELFLY_GET_", env: {}, flags: { daemon: cluster.peers[0]!.apiUrl, output: "x", ...flags } });

  before(async () => {
    outDir = mkdtempSync(join(tmpdir(), "damselfly-defaults-"));
    hub = await startHub();
    hub.repos.create("model", "acme/tiny").commit({ "model.safetensors": { data: weights, lfs: true } });
    cluster = await startCluster({ peers: 1, seed: true, daemonArgs: ["--hf-endpoint", hub.url, "--s3-endpoint", S3_DEFAULT] });
  });
  after(async () => {
    await cluster?.stop();
    await hub?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("a get naming no hub endpoint takes the daemon's, and downloads through it", async () => {
    const c = await withSourceDefaults("hf://acme/tiny/model.safetensors", config(), {});
    assert.equal(c.hfEndpoint, hub.url);
    const out = join(outDir, "w.bin");
    const r = await cluster.peers[0]!.get(["hf://acme/tiny/model.safetensors", "-O", out, "--no-progress"], {
      env: { HF_ENDPOINT: undefined, HF_TOKEN: undefined },
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(out).equals(weights));
    assert.ok(hub.requests.some((q) => q.server === "hub"));
  });

  test("a get naming its own endpoint keeps it (flag or environment)", async () => {
    const flag = await withSourceDefaults("hf://acme/tiny/x", config({ hfEndpoint: "http://127.0.0.1:8/mirror" }), {});
    assert.equal(flag.hfEndpoint, "http://127.0.0.1:8/mirror");
    const env = await withSourceDefaults("hf://acme/tiny/x", config(), { HF_ENDPOINT: "http://127.0.0.1:7" });
    assert.equal(env.hfEndpoint, "");
  });

  test("s3: a caller with credentials and no endpoint signs against the daemon's; one naming an endpoint keeps it", async () => {
    const creds = { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY: "secret" };
    const c = await withSourceDefaults("s3://bucket/key", config(), creds);
    assert.equal(c.s3Endpoint, S3_DEFAULT);
    const named = await withSourceDefaults("s3://bucket/key", config(), { ...creds, AWS_ENDPOINT_URL_S3: "http://127.0.0.1:6" });
    assert.equal(named.s3Endpoint, "");
    // Without credentials the daemon signs with its own defaults: nothing to ask.
    const none = await withSourceDefaults("s3://bucket/key", config(), {});
    assert.equal(none.s3Endpoint, "");
  });

  test("no daemon there: no defaults, no error (the download reports the daemon)", async () => {
    const c = await withSourceDefaults("hf://acme/tiny/x", config({ daemon: `unix:${join(outDir, "nobody.sock")}` }), {});
    assert.equal(c.hfEndpoint, "");
  });
});
