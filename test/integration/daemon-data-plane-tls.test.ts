// A daemon process with --tls-*: its upload port (the data plane) speaks
// mutual TLS to peers and seed peers only. Without certificates its upload
// listener stays on loopback unless --insecure says otherwise.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makePki, type CertFiles } from "../helpers/pki.js";
import { loopbackDaemonArgs, runDamselfly, spawnDamselfly } from "../helpers/procs.js";
import { tempDir } from "../helpers/store.js";
import { httpsGet } from "../helpers/tls-probe.js";

// The status and our error code of one GET (tls-probe.ts httpsGet).
async function get(port: number, path: string, ca: Buffer, client?: CertFiles): Promise<{ status: number; error: string | undefined }> {
  const r = await httpsGet(port, path, ca, client);
  return { status: r.status, error: r.headers["x-damselfly-error"] as string | undefined };
}

test("daemon with TLS: the upload port refuses callers without a cluster certificate or of another role", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, "df-daemon-dp-tls-");
  const pki = await makePki(join(dir, "pki"));
  const dataDir = join(dir, "data");
  // No scheduler answers (port 1): the daemon serves what it holds.
  const proc = spawnDamselfly(["daemon", ...loopbackDaemonArgs("127.0.0.1:1", dataDir), ...(await pki.args("peer", "p1")), "--hostname", "p1"], { name: "p1" });
  t.after(() => proc.stop("SIGTERM", 5_000));
  const ready = await proc.waitForLog("daemon ready", 20_000);
  const port = Number(String(ready.upload).split(":").pop());
  const ca = readFileSync(join(pki.caDir, "ca.crt"));
  const path = `/v1/tasks/${"a".repeat(64)}/sync`;
  await assert.rejects(get(port, path, ca), "no certificate");
  const other = await makePki(join(dir, "other"));
  await assert.rejects(get(port, path, ca, await other.issue("seed-peer", "s")), "another CA");
  assert.deepEqual(await get(port, path, ca, await pki.issue("client", "c")), { status: 403, error: "DF_ERR_PEER_ROLE" });
  assert.deepEqual(await get(port, path, ca, await pki.issue("seed-peer", "s")), { status: 404, error: "DF_ERR_TASK_NOT_FOUND" });
});

test("daemon without TLS: an upload listener on a non-loopback address needs --insecure", { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, "df-daemon-dp-bind-");
  const args = ["daemon", ...loopbackDaemonArgs("127.0.0.1:1", join(dir, "data")), "--upload-listen", "0.0.0.0:0"];
  const r = await runDamselfly(args, { timeoutMs: 30_000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /DF_ERR_INSECURE_BIND/);
  assert.match(r.stderr, /upload/);
});
