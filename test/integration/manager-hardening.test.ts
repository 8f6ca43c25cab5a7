// The manager under hostile input: a job timeout of 1e18 ns is refused at the
// API, and jobs the runner cannot run (a huge stored timeout, unreadable
// arguments, a task job that throws) end in FAILURE instead of staying
// PENDING forever; the component RPC refuses a 400 MiB body early with
// bounded memory; every response carries the browser security headers.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { managerv1 } from "../../src/protocol/index.js";
import { rssBytes, startManager, waitForJob, type ManagerHandle } from "../helpers/manager.js";

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;

// Sends a body declared (or streamed) as 400 MiB, 1 MiB at a time, until the
// server answers; returns the status and how much was sent by then.
function hugeBody(url: string, declared: boolean): Promise<{ status: number; sent: number }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: "POST",
      headers: { "content-type": "application/json", ...(declared ? { "content-length": String(400 * MiB) } : {}) },
    });
    req.on("response", (res) => {
      answered = true;
      res.resume();
      resolve({ status: res.statusCode ?? 0, sent });
      req.destroy();
    });
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    const chunk = Buffer.alloc(MiB, 0x20);
    const pump = () => {
      while (!answered && sent < 400 * MiB) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once("drain", pump);
      }
    };
    pump();
  });
}

describe("manager hardening", { timeout: 120_000 }, () => {
  let m: ManagerHandle;
  let dataDir: string;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "dfm-hard-"));
    m = await startManager({ dataDir });
  });
  after(async () => {
    await m?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("a job timeout past 24 h is refused at the API", async () => {
    const root = await m.signin();
    const job = (timeout: number) =>
      m.api("POST", "/oapi/v1/jobs", { token: root, body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/x", timeout } } });
    const huge = await job(1e18);
    assert.equal(huge.status, 400, JSON.stringify(huge.body));
    assert.equal(huge.body.code, "DF_ERR_INVALID_REQUEST");
    assert.equal((await job(24 * 3600 * 1e9 + 1)).status, 400);
    const ok = await job(24 * 3600 * 1e9);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal((await waitForJob(m, root, ok.body.id, 20_000)).state, "FAILURE", "no scheduler: it fails, clearly");
  });

  test("stored jobs the runner cannot run end in FAILURE at the next start, not PENDING", async () => {
    await m.stop();
    const Sqlite = require("better-sqlite3") as typeof import("better-sqlite3");
    const db = new Sqlite(join(dataDir, "manager.db"));
    const t = new Date().toISOString();
    const insert = db.prepare(
      "INSERT INTO jobs (type, state, args, scheduler_cluster_ids, result, error, user_id, created_at, updated_at) VALUES (?, 'PENDING', ?, '[]', '{}', '', 1, ?, ?)",
    );
    const ids = [
      insert.run("preheat", JSON.stringify({ type: "file", url: "http://127.0.0.1:9/x", timeout: 1e18 }), t, t).lastInsertRowid,
      insert.run("preheat", "{not json", t, t).lastInsertRowid,
      // Throws inside the runner: no task ID and no URL to compute one from.
      insert.run("get_task", "{}", t, t).lastInsertRowid,
    ].map(Number);
    db.close();
    m = await startManager({ dataDir });
    const root = await m.signin();
    const ended = await Promise.all(ids.map((id) => waitForJob(m, root, id, 20_000)));
    assert.deepEqual(
      ended.map((j) => j.state),
      ["FAILURE", "FAILURE", "FAILURE"],
    );
    assert.match(ended[0].error, /no active scheduler/, "the 1e18 ns job ran (clamped) and failed for its real reason");
    assert.match(ended[1].error, /cannot be read/);
    assert.match(ended[2].error, /DF_ERR_INVALID_URL/);
    assert.equal(m.proc.exitCode, null);
  });

  test("the component RPC refuses a 400 MiB body early, in bounded memory", async (t) => {
    const url = `${m.url}/${managerv1.ManagerService.typeName}/KeepAliveScheduler`;
    const base = rssBytes(m.proc.pid);
    for (const declared of [true, false]) {
      const r = await hugeBody(url, declared);
      t.diagnostic(`${declared ? "declared" : "chunked"} 400 MiB body: HTTP ${r.status} after ${(r.sent / MiB).toFixed(0)} MiB sent`);
      assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
      assert.ok(r.sent <= 64 * MiB, `${r.sent / MiB} MiB sent before the answer`);
    }
    const grew = (rssBytes(m.proc.pid) - base) / MiB;
    assert.ok(grew < 64, `the manager's RSS grew ${grew.toFixed(0)} MiB`);
    assert.equal(m.proc.exitCode, null);
  });

  test("every response carries CSP, frame, content-type and referrer headers", async () => {
    const root = await m.signin();
    const rpc = `/${managerv1.ManagerService.typeName}/ListSchedulers`;
    for (const [method, path, body] of [
      ["GET", "/", undefined],
      ["GET", "/api/v1/users/me", undefined],
      ["GET", "/api/v1/nothing", undefined],
      ["GET", "/docs", undefined],
      ["GET", "/api/v1/openapi.json", undefined],
      ["POST", "/api/v1/users/signin", { name: "root", password: "wrong-one" }],
      ["POST", rpc, {}],
      ["GET", "/healthz", undefined],
    ] as const) {
      const r = await m.api(method, path, { ...(path === "/api/v1/nothing" ? { token: root } : {}), ...(body ? { body } : {}) });
      const h = r.headers;
      const where = `${method} ${path} (${r.status})`;
      assert.match(String(h["content-security-policy"]), /frame-ancestors 'none'/, where);
      assert.match(String(h["content-security-policy"]), /script-src 'self';/, where);
      assert.equal(h["x-frame-options"], "DENY", where);
      assert.equal(h["x-content-type-options"], "nosniff", where);
      assert.equal(h["referrer-policy"], "no-referrer", where);
    }
  });
});
