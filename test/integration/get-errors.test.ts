// `damselfly get` failure modes end to end: real scheduler and daemon
// processes, the test origin, exact codes, messages and exit statuses.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatBytes } from "../../src/cli/format.js";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { runGet, closedPort } from "../helpers/procs.js";

const RUN = `${process.pid}-${Date.now().toString(36)}`;

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "damselfly-get-test-"));
}

// The daemon removes its temporary file after reporting the failure (or after
// noticing the client went away): give it a moment.
async function assertEmptyDir(dir: string, waitMs = 3_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  let entries = readdirSync(dir);
  while (entries.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    entries = readdirSync(dir);
  }
  assert.deepEqual(entries, [], `output directory ${dir} should be empty`);
}

const ERROR_LINE = (code: string) => new RegExp(`^damselfly get: ${code}: `, "m");

describe("get: validation before contacting the daemon", () => {
  let dir: string;
  let daemonUrl: string;
  before(async () => {
    dir = tempDir();
    // Nothing listens here: validation failures must come first anyway.
    daemonUrl = `http://127.0.0.1:${await closedPort()}`;
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const bad of ["ftp://x", "not a url"]) {
    test(`bad URL ${JSON.stringify(bad)} exits 2`, async () => {
      const r = await runGet([bad, "-O", join(dir, "out"), "--daemon", daemonUrl]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^damselfly get: DF_ERR_INVALID_URL: invalid URL /m);
      assert.ok(r.stderr.includes(JSON.stringify(bad)), r.stderr);
      assert.equal(r.stdout.length, 0);
    });
  }

  test("bad digest exits 2", async () => {
    const r = await runGet(["http://127.0.0.1:1/x", "-O", join(dir, "out"), "--digest", "md5:abcd", "--daemon", daemonUrl]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_INVALID_DIGEST: invalid digest "md5:abcd"/m);
  });

  test("bad header exits 2", async () => {
    const r = await runGet(["http://127.0.0.1:1/x", "-O", join(dir, "out"), "-H", "NoColonHere", "--daemon", daemonUrl]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_USAGE: invalid header "NoColonHere"/m);
  });

  test("missing -O exits 2", async () => {
    const r = await runGet(["http://127.0.0.1:1/x", "--daemon", daemonUrl]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_USAGE: missing -O\/--output \(a file path, or - for stdout\)$/m);
  });

  test("missing output directory exits 8", async () => {
    const out = join(dir, "no", "such", "dir", "file");
    const r = await runGet(["http://127.0.0.1:1/x", "-O", out, "--daemon", daemonUrl]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_OUTPUT: output directory .* does not exist$/m);
    assert.ok(r.stderr.includes(join(dir, "no", "such", "dir")), r.stderr);
  });

  test("unknown option is a usage error, exit 2", async () => {
    const r = await runGet(["http://127.0.0.1:1/x", "-O", join(dir, "out"), "--no-such-flag"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_USAGE: unknown option '--no-such-flag'/m);
  });

  test("unreachable daemon exits 5", async () => {
    const r = await runGet(["http://127.0.0.1:1/x", "-O", join(dir, "out"), "--daemon", daemonUrl]);
    assert.equal(r.code, 5, r.stderr);
    assert.ok(r.stderr.includes(`damselfly get: DF_ERR_DAEMON_UNAVAILABLE: daemon unreachable at ${daemonUrl}: `), r.stderr);
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe("get: against a scheduler and a daemon", () => {
  let cluster: Cluster;
  let origin: Origin;
  let dir: string;
  let daemon: string;

  before(async () => {
    origin = await startOrigin();
    cluster = await startCluster({ peers: 1, seed: false });
    daemon = cluster.peers[0]!.apiUrl;
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  const get = (args: string[], timeoutMs = 60_000) => runGet([...args, "--daemon", daemon, "--no-progress"], { timeoutMs });

  test("success: output equals the origin's bytes; summary names the origin bytes", async (t) => {
    dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = `/ok-${RUN}.bin`;
    const size = 3 * 1024 * 1024 + 1234;
    const data = origin.addRandomFile(path, size, path);
    const out = join(dir, "out.bin");
    const r = await get([origin.url(path), "-O", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(out).equals(data), "output differs from the origin's content");
    assert.deepEqual(readdirSync(dir), ["out.bin"], "no temporary files left");
    const summary = r.stderr.split("\n").find((l) => l.startsWith("damselfly get: ") && l.includes(" -> "));
    assert.ok(summary, `no summary line in:\n${r.stderr}`);
    assert.ok(summary.includes(`${formatBytes(size)} in `), summary);
    assert.ok(summary.includes(`-> ${out};`), summary);
    assert.ok(summary.includes(`from origin ${formatBytes(size)}`), summary);
    assert.match(summary, /; task [0-9a-f]{12}/);
    assert.ok(origin.bytesSent(path) >= size, "the origin served the file");
    assert.equal(r.stdout.length, 0, "nothing on stdout when writing a file");
  });

  test("success to stdout with -O -", async () => {
    const path = `/stdout-${RUN}.bin`;
    const data = origin.addRandomFile(path, 1024 * 1024 + 7, path);
    const r = await get([origin.url(path), "-O", "-"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, data.length);
    assert.ok(r.stdout.equals(data), "stdout differs from the origin's content");
    assert.match(r.stderr, /-> stdout;/);
  });

  test("-O - streams many pieces and pieces over 4 MiB intact (the daemon reuses its read buffers)", async () => {
    for (const [pieceLength, size] of [
      ["1MiB", 3 * 1024 * 1024 + 512 * 1024 + 3],
      ["8MiB", 10 * 1024 * 1024 + 5],
    ] as const) {
      const path = `/stdout-pieces-${pieceLength}-${RUN}.bin`;
      const data = origin.addRandomFile(path, size, path);
      const r = await get([origin.url(path), "-O", "-", "--piece-length", pieceLength]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.length, data.length, pieceLength);
      assert.ok(r.stdout.equals(data), `stdout differs from the origin's content (${pieceLength} pieces)`);
    }
  });

  test("success with a matching --digest", async (t) => {
    dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = `/digest-ok-${RUN}.bin`;
    const data = origin.addRandomFile(path, 700 * 1024 + 11, path);
    const out = join(dir, "out.bin");
    const r = await get([origin.url(path), "-O", out, "--digest", `sha256:${sha256Hex(data).toUpperCase()}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(out).equals(data), "output differs from the origin's content");
    assert.deepEqual(readdirSync(dir), ["out.bin"], "no temporary files left");
  });

  for (const status of [404, 500]) {
    test(`origin ${status} exits 4 with the status in the message`, async (t) => {
      dir = tempDir();
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const url = `${origin.url(`/status/${status}`)}?run=${RUN}`;
      const r = await get([url, "-O", join(dir, "out")]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, ERROR_LINE("DF_ERR_SOURCE_STATUS"));
      const reason = status === 404 ? "Not Found" : "Internal Server Error";
      const expected = `damselfly get: DF_ERR_SOURCE_STATUS: origin returned HTTP ${status} ${reason} for ${origin.url(`/status/${status}`)}?…`;
      assert.ok(r.stderr.split("\n").includes(expected), `expected the line ${JSON.stringify(expected)} in:\n${r.stderr}`);
      await assertEmptyDir(dir);
    });
  }

  test("digest mismatch exits 6 and leaves no output file", async (t) => {
    dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = `/mismatch-${RUN}.bin`;
    const data = origin.addRandomFile(path, 512 * 1024 + 3, path);
    const out = join(dir, "out.bin");
    const r = await get([origin.url(path), "-O", out, "--digest", `sha256:${"0".repeat(64)}`]);
    assert.equal(r.code, 6, r.stderr);
    const expected = `damselfly get: DF_ERR_DIGEST_MISMATCH: digest mismatch: expected sha256:${"0".repeat(64)}, got sha256:${sha256Hex(data)}`;
    assert.ok(r.stderr.split("\n").includes(expected), `expected the line ${JSON.stringify(expected)} in:\n${r.stderr}`);
    assert.equal(existsSync(out), false, "the final output must not exist");
    await assertEmptyDir(dir);
  });

  test("timeout while the origin delays its headers exits 7 and leaves no output file", async (t) => {
    dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = `/slow-headers-${RUN}.bin`;
    // The headers come long after the timeout: only the timeout ends the get.
    origin.addRandomFile(path, 256 * 1024, path, { headerDelayMs: 60_000 });
    const out = join(dir, "out.bin");
    const r = await get([origin.url(path), "-O", out, "--timeout", "1s"]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_TIMEOUT: download timed out after 1s$/m);
    assert.ok(r.elapsedMs < 30_000, `took ${r.elapsedMs}ms: waited for the origin`);
    assert.equal(existsSync(out), false);
    await assertEmptyDir(dir);
  });

  test("timeout during a throttled body exits 7 and leaves no output file", async (t) => {
    dir = tempDir();
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const path = `/throttled-${RUN}.bin`;
    origin.addRandomFile(path, 4 * 1024 * 1024, path, { throttle: 128 * 1024 });
    const out = join(dir, "out.bin");
    const r = await get([origin.url(path), "-O", out, "--timeout", "1s"]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /^damselfly get: DF_ERR_TIMEOUT: download timed out after 1s$/m);
    // The whole body takes 32 s.
    assert.ok(r.elapsedMs < 20_000, `took ${r.elapsedMs}ms: waited for the whole body`);
    assert.equal(existsSync(out), false);
    await assertEmptyDir(dir);
  });
});
