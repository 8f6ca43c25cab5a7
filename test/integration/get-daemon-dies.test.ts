// The daemon dies (SIGKILL) while `get` waits on a download: `get` reports
// the daemon unavailable (DF_ERR_DAEMON_UNAVAILABLE, exit 5), for either
// delivery (the store path, or the bytes streamed to stdout), and leaves no
// output file. The origin is slow so the download is surely under way.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ExitCode } from "../../src/common/errors.js";
import { startCluster } from "../helpers/cluster.js";
import { startOrigin } from "../helpers/origin.js";
import { logTail, pollUntil, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;

for (const delivery of ["file", "stdout"] as const) {
  test(`daemon killed mid-download (-O ${delivery}): get exits with DF_ERR_DAEMON_UNAVAILABLE`, { timeout: 60_000 }, async (t) => {
    const origin = await startOrigin({ throttle: 2 * MiB });
    t.after(() => origin.close());
    origin.addRandomFile("/slow.bin", 32 * MiB, `dies-${delivery}`);
    const cluster = await startCluster({ peers: 1, seed: false, t });
    const peer = cluster.peers[0]!;
    const dir = tempDir(t, "damselfly-dies-");
    const out = delivery === "file" ? join(dir, "out.bin") : "-";
    const get = peer.get([origin.url("/slow.bin"), "-O", out, "--no-progress"], { timeoutMs: 40_000 });
    await pollUntil(() => origin.bytesSent("/slow.bin") > 2 * MiB, "the download under way", 30_000);
    await cluster.stopDaemon(peer, "SIGKILL");
    const r = await get;
    assert.equal(r.code, ExitCode.UNAVAILABLE, `get exited ${r.code}:\n${r.stderr}\n${logTail(peer)}`);
    assert.match(r.stderr, /^damselfly get: DF_ERR_DAEMON_UNAVAILABLE: /m);
    assert.deepEqual(readdirSync(dir), [], "no output file, no temporary file");
  });
}
