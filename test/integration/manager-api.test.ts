// The manager's REST API against a real manager process, on SQLite and on a
// real PostgreSQL: sign-in, users and roles, personal access tokens (scopes,
// expiry, shown once, stored as hashes), clusters, audit log, validation and
// error bodies. Every refused request is checked to have changed nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createManagerTransport, managerv1 } from "../../src/protocol/index.js";
import { startManager, waitForJob, type ManagerHandle } from "../helpers/manager.js";
import { postgresBinDir, startPostgres, type Postgres } from "../helpers/postgres.js";

const future = (ms: number) => new Date(Date.now() + ms).toISOString();

function apiSuite(name: string, database: () => Promise<string | undefined>) {
  describe(`manager API (${name})`, { timeout: 120_000 }, () => {
    let m: ManagerHandle;
    let root: string;

    before(async () => {
      const db = await database();
      m = await startManager(db ? { database: db } : {});
      root = await m.signin();
    });
    after(async () => {
      await m?.stop();
    });

    test("sign-in: a wrong password or an unknown user is 401 with a stable code; a good one gives a session", async () => {
      for (const body of [
        { name: "root", password: "wrong-password" },
        { name: "nobody", password: "whatever1" },
      ]) {
        const r = await m.api("POST", "/api/v1/users/signin", { body });
        assert.equal(r.status, 401);
        assert.equal(r.body.code, "DF_ERR_UNAUTHENTICATED");
      }
      const me = await m.api("GET", "/api/v1/users/me", { token: root });
      assert.equal(me.status, 200);
      assert.equal(me.body.name, "root");
      assert.equal(me.body.role, "root");
      const none = await m.api("GET", "/api/v1/users/me");
      assert.equal(none.status, 401);
      const bogus = await m.api("GET", "/api/v1/users/me", { token: "dfs_not-a-real-session" });
      assert.equal(bogus.status, 401);
    });

    test("bad input is a 400 with a message and a code; unknown routes are JSON 404s", async () => {
      const cases: [string, string, unknown][] = [
        ["POST", "/api/v1/users/signin", { name: "root" }],
        ["POST", "/api/v1/users/signin", "{not json"],
        ["POST", "/api/v1/users", { name: "ok-name", password: "short" }],
        ["POST", "/api/v1/users", { name: "bad name!", password: "long-enough-1" }],
        ["POST", "/api/v1/scheduler-clusters", { name: "c", config: { candidateParentLimit: 0 } }],
        ["POST", "/api/v1/scheduler-clusters", { name: "c", config: { unknownKey: 1 } }],
        ["POST", "/api/v1/jobs", { type: "preheat", args: { type: "file", url: "ftp://x/y" } }],
        ["POST", "/api/v1/jobs", { type: "preheat", args: { type: "image", url: "https://r.example/not-a-manifest" } }],
        ["POST", "/api/v1/jobs", { type: "preheat", args: { type: "file", url: "http://x/y", scope: "everyone" } }],
        ["POST", "/api/v1/jobs", { type: "preheat", args: { type: "file", url: "http://x/y", headers: { "Bad Header": "v" } } }],
        ["POST", "/api/v1/roles", { name: "r", permissions: ["cluster:delete"] }],
      ];
      for (const [method, path, body] of cases) {
        const r = await m.api(method, path, { token: root, body, headers: { "content-type": "application/json" } });
        assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.body)}`);
        assert.ok(typeof r.body.message === "string" && r.body.message.length > 0);
        assert.match(r.body.code, /^DF_ERR_(INVALID_REQUEST|INVALID_URL)$/);
      }
      const nf = await m.api("GET", "/api/v1/nothing-here", { token: root });
      assert.equal(nf.status, 404);
      assert.equal(nf.body.code, "DF_ERR_NOT_FOUND");
      const job = await m.api("GET", "/api/v1/jobs/999999", { token: root });
      assert.equal(job.status, 404);
      assert.equal(job.body.code, "DF_ERR_NOT_FOUND");
      const users = await m.api("GET", "/api/v1/users", { token: root });
      assert.deepEqual(
        users.body.map((u: { name: string }) => u.name),
        ["root"],
        "no user was created by the bad requests",
      );
    });

    test("a guest reads clusters and jobs but every write is 403 and changes nothing", async () => {
      const created = await m.api("POST", "/api/v1/users", { token: root, body: { name: "gina", password: "guest-password-1" } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.role, "guest");
      const guest = await m.signin("gina", "guest-password-1");
      assert.equal((await m.api("GET", "/api/v1/scheduler-clusters", { token: guest })).status, 200);
      assert.equal((await m.api("GET", "/api/v1/jobs", { token: guest })).status, 200);
      const before = (await m.api("GET", "/api/v1/scheduler-clusters/1", { token: root })).body;
      const writes: [string, string, unknown][] = [
        ["PATCH", "/api/v1/scheduler-clusters/1", { config: { backToSourceLimit: 0 } }],
        ["POST", "/api/v1/scheduler-clusters", { name: "guest-cluster" }],
        ["POST", "/api/v1/users", { name: "mallory", password: "mallory-password" }],
        ["PATCH", `/api/v1/users/${created.body.id}`, { role: "root" }],
        ["POST", "/api/v1/roles", { name: "mine", permissions: ["user:write"] }],
        ["POST", "/api/v1/jobs", { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/x" } }],
      ];
      for (const [method, path, body] of writes) {
        const r = await m.api(method, path, { token: guest, body });
        assert.equal(r.status, 403, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, "DF_ERR_PERMISSION_DENIED");
      }
      assert.equal((await m.api("GET", "/api/v1/users", { token: guest })).status, 403);
      assert.equal((await m.api("GET", "/api/v1/audits", { token: guest })).status, 403);
      assert.deepEqual((await m.api("GET", "/api/v1/scheduler-clusters/1", { token: root })).body, before);
      const names = (await m.api("GET", "/api/v1/users", { token: root })).body.map((u: { name: string; role: string }) => `${u.name}:${u.role}`);
      assert.deepEqual(names, ["root:root", "gina:guest"]);
      assert.equal((await m.api("GET", "/api/v1/scheduler-clusters", { token: root })).body.length, 1);
      assert.equal((await m.api("GET", "/api/v1/jobs", { token: root })).body.length, 0);
    });

    test("a custom role grants exactly its permissions", async () => {
      const role = await m.api("POST", "/api/v1/roles", { token: root, body: { name: "operator", permissions: ["cluster:write", "job:read"] } });
      assert.equal(role.status, 201, JSON.stringify(role.body));
      assert.equal((await m.api("POST", "/api/v1/roles", { token: root, body: { name: "operator", permissions: [] } })).status, 409);
      assert.equal((await m.api("POST", "/api/v1/users", { token: root, body: { name: "otto", password: "operator-pass-1", role: "operator" } })).status, 201);
      const op = await m.signin("otto", "operator-pass-1");
      const c = await m.api("POST", "/api/v1/scheduler-clusters", { token: op, body: { name: "edge", config: { candidateParentLimit: 5 } } });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      assert.deepEqual(c.body.config, { candidateParentLimit: 5 });
      const p = await m.api("PATCH", `/api/v1/scheduler-clusters/${c.body.id}`, { token: op, body: { config: { backToSourceLimit: 1 } } });
      assert.equal(p.status, 200);
      assert.deepEqual(p.body.config, { backToSourceLimit: 1 });
      assert.equal(
        (await m.api("POST", "/api/v1/jobs", { token: op, body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/x" } } })).status,
        403,
      );
      assert.equal((await m.api("POST", "/api/v1/users", { token: op, body: { name: "x-user", password: "x-password-1" } })).status, 403);
      assert.equal((await m.api("DELETE", `/api/v1/scheduler-clusters/${c.body.id}`, { token: op })).status, 204);
    });

    test("only root makes root: a user manager cannot grant or take root; the last root stays root", async () => {
      // It holds what a guest holds, so it may make guests.
      const perms = ["user:write", "cluster:read", "job:read"];
      assert.equal((await m.api("POST", "/api/v1/roles", { token: root, body: { name: "usermgr", permissions: perms } })).status, 201);
      const um = await m.api("POST", "/api/v1/users", { token: root, body: { name: "uma", password: "usermgr-pass-1", role: "usermgr" } });
      const uma = await m.signin("uma", "usermgr-pass-1");
      const escalate = await m.api("PATCH", `/api/v1/users/${um.body.id}`, { token: uma, body: { role: "root" } });
      assert.equal(escalate.status, 403);
      assert.equal(escalate.body.code, "DF_ERR_PERMISSION_DENIED");
      assert.equal((await m.api("POST", "/api/v1/users", { token: uma, body: { name: "newroot", password: "newroot-pass-1", role: "root" } })).status, 403);
      assert.equal((await m.api("PATCH", "/api/v1/users/1", { token: uma, body: { password: "hijacked-pass-1" } })).status, 403);
      assert.equal((await m.api("DELETE", "/api/v1/users/1", { token: uma })).status, 403);
      // What a user manager may do: make a guest.
      assert.equal((await m.api("POST", "/api/v1/users", { token: uma, body: { name: "gus", password: "guest-pass-22" } })).status, 201);
      // Nobody changes their own role: the last root stays root.
      const last = await m.api("PATCH", "/api/v1/users/1", { token: root, body: { role: "guest" } });
      assert.equal(last.status, 403);
      assert.match(last.body.message, /own role/);
      const users = (await m.api("GET", "/api/v1/users", { token: root })).body.map((u: { name: string; role: string }) => `${u.name}:${u.role}`);
      assert.ok(users.includes("root:root") && users.includes("uma:usermgr") && !users.includes("newroot:root"), users.join(" "));
      assert.equal((await m.api("GET", "/api/v1/users/me", { token: root })).status, 200, "root's session survived the refused changes");
    });

    test("personal access tokens: shown once, scopes and expiry enforced, only hashes at rest", async () => {
      const jobOnly = await m.api("POST", "/api/v1/personal-access-tokens", {
        token: root,
        body: { name: "harbor", scopes: ["job"], expired_at: future(3_600_000) },
      });
      assert.equal(jobOnly.status, 201, JSON.stringify(jobOnly.body));
      const pat = jobOnly.body.token as string;
      assert.match(pat, /^dfp_[A-Za-z0-9_-]{43}$/);
      const listed = await m.api("GET", "/api/v1/personal-access-tokens", { token: root });
      assert.equal(listed.body.length, 1);
      assert.equal(listed.body[0].token, undefined, "the list never shows the token");
      assert.ok(!JSON.stringify(listed.body).includes(pat));

      // In scope: jobs (open API and REST). Out of scope: clusters, users.
      assert.equal((await m.api("GET", "/oapi/v1/jobs", { token: pat })).status, 200);
      const outOfScope = await m.api("PATCH", "/api/v1/scheduler-clusters/1", { token: pat, body: { config: { retryLimit: 9 } } });
      assert.equal(outOfScope.status, 403);
      assert.equal(outOfScope.body.code, "DF_ERR_PERMISSION_DENIED");
      assert.deepEqual((await m.api("GET", "/api/v1/scheduler-clusters/1", { token: root })).body.config, {});
      assert.equal((await m.api("GET", "/api/v1/users", { token: pat })).status, 403);
      // A token cannot mint tokens.
      assert.equal(
        (await m.api("POST", "/api/v1/personal-access-tokens", { token: pat, body: { name: "more", scopes: ["job"], expired_at: future(60_000) } })).status,
        403,
      );
      // Expiry in the past is refused; a short-lived token stops working.
      assert.equal(
        (await m.api("POST", "/api/v1/personal-access-tokens", { token: root, body: { name: "old", scopes: ["job"], expired_at: future(-1000) } })).status,
        400,
      );
      // Lives 5 s: long enough to be used first on a busy machine; then the
      // test waits past its expiry (the manager's clock is this machine's).
      const expiresAt = Date.now() + 5_000;
      const short = await m.api("POST", "/api/v1/personal-access-tokens", {
        token: root,
        body: { name: "short", scopes: ["job"], expired_at: new Date(expiresAt).toISOString() },
      });
      assert.equal((await m.api("GET", "/oapi/v1/jobs", { token: short.body.token })).status, 200);
      await new Promise((r) => setTimeout(r, expiresAt - Date.now() + 300));
      const expired = await m.api("GET", "/oapi/v1/jobs", { token: short.body.token });
      assert.equal(expired.status, 401);
      assert.equal(expired.body.code, "DF_ERR_UNAUTHENTICATED");
      const expiredWrite = await m.api("POST", "/oapi/v1/jobs", {
        token: short.body.token,
        body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/x" } },
      });
      assert.equal(expiredWrite.status, 401);
      assert.equal((await m.api("GET", "/api/v1/jobs", { token: root })).body.length, 0, "no job was created");
      // Revoked tokens stop working.
      assert.equal((await m.api("DELETE", `/api/v1/personal-access-tokens/${jobOnly.body.id}`, { token: root })).status, 204);
      assert.equal((await m.api("GET", "/oapi/v1/jobs", { token: pat })).status, 401);

      if (m.database.startsWith("sqlite:")) {
        // Neither the token nor any password is in the database files.
        const dir = join(m.dataDir);
        const files = readdirSync(dir).filter((f) => f.startsWith("manager.db"));
        assert.ok(files.length > 0);
        for (const f of files) {
          const bytes = readFileSync(join(dir, f)).toString("latin1");
          assert.ok(!bytes.includes(pat), `${f} holds the token`);
          assert.ok(!bytes.includes(pat.slice(4)), `${f} holds the token's secret part`);
          assert.ok(!bytes.includes("test-admin-password-1"), `${f} holds the admin password`);
          assert.ok(!bytes.includes(root), `${f} holds a session token`);
        }
      }
    });

    test("component RPC and jobs on this database: a scheduler keeps alive with hosts, a job without a live scheduler fails clearly", async () => {
      const rpc = createClient(managerv1.ManagerService, createManagerTransport(m.url));
      const hosts = [
        {
          id: "h-1",
          hostname: "seed-a",
          ip: "10.1.0.1",
          seed: true,
          uploadPort: 65002,
          apiPort: 65000,
          uploadBytesTotal: 5n * 1024n ** 3n,
          concurrentUploads: 3,
        },
      ];
      const first = await rpc.keepAliveScheduler({ clusterId: 1n, hostname: "sched-a", ip: "10.1.0.9", port: 8002, intervalSeconds: 3, hosts });
      const again = await rpc.keepAliveScheduler({ clusterId: 1n, hostname: "sched-a", ip: "10.1.0.9", port: 8002, intervalSeconds: 3, hosts });
      assert.equal(again.schedulerId, first.schedulerId, "the same scheduler keeps its row");
      await assert.rejects(rpc.keepAliveScheduler({ clusterId: 99n, hostname: "x", ip: "10.1.0.8", port: 8002 }), /scheduler cluster 99 does not exist/);
      const listed = (await m.api("GET", "/api/v1/scheduler-clusters/1/hosts", { token: root })).body;
      assert.deepEqual(
        listed.map((h: { hostname: string; type: string; upload_bytes_total: number }) => [h.hostname, h.type, h.upload_bytes_total]),
        [["seed-a", "seed", 5 * 1024 ** 3]],
      );
      assert.equal((await rpc.listSchedulers({ clusterId: 1n })).schedulers[0]?.ip, "10.1.0.9");
      await rpc.leaveScheduler({ ip: "10.1.0.9", port: 8002 });
      assert.equal((await rpc.listSchedulers({})).schedulers.length, 0);

      const created = await m.api("POST", "/api/v1/jobs", {
        token: root,
        body: { type: "preheat", args: { type: "file", url: "http://127.0.0.1:9/nothing.bin" } },
      });
      assert.equal(created.status, 200);
      const job = await waitForJob(m, root, created.body.id, 10_000, "/api/v1");
      assert.equal(job.state, "FAILURE");
      assert.match(job.result.job_states[0].error, /no active scheduler/);
      const listedJobs = (await m.api("GET", "/api/v1/jobs", { token: root })).body;
      assert.deepEqual(
        listedJobs.map((j: { id: number }) => j.id),
        [created.body.id],
      );
    });

    test("the audit log records who changed what, failed sign-ins included, never bodies", async () => {
      const r = await m.api("GET", "/api/v1/audits?limit=200", { token: root });
      assert.equal(r.status, 200);
      const rows = r.body as { user_name: string; method: string; path: string; status_code: number }[];
      assert.ok(
        rows.some((a) => a.path === "/api/v1/users/signin" && a.status_code === 401 && a.user_name === "root"),
        "a failed sign-in is recorded",
      );
      assert.ok(rows.some((a) => a.path === "/api/v1/users" && a.method === "POST" && a.status_code === 201 && a.user_name === "root"));
      assert.ok(rows.some((a) => a.path === "/api/v1/scheduler-clusters/:id" && a.method === "PATCH" && a.status_code === 403 && a.user_name === "gina"));
      assert.ok(!JSON.stringify(rows).includes("guest-password-1"));
    });

    test("OpenAPI document and docs page", async () => {
      const doc = await m.api("GET", "/api/v1/openapi.json");
      assert.equal(doc.status, 200);
      assert.equal(doc.body.openapi.slice(0, 2), "3.");
      for (const p of ["/api/v1/users/signin", "/api/v1/personal-access-tokens", "/api/v1/scheduler-clusters/{id}", "/oapi/v1/jobs", "/oapi/v1/jobs/{id}"]) {
        assert.ok(doc.body.paths[p], `OpenAPI lacks ${p}`);
      }
      const page = await m.api("GET", "/docs");
      assert.equal(page.status, 200);
      assert.match(String(page.body), /swagger/i);
      assert.equal((await m.api("GET", "/healthy")).status, 200);
    });
  });
}

apiSuite("SQLite", async () => undefined);

let pg: Postgres | undefined;
const hasPostgres = postgresBinDir() !== undefined;
if (!hasPostgres && process.env.DAMSELFLY_REQUIRE_POSTGRES === "1") throw new Error("PostgreSQL tests required but postgresql is not installed");
describe("PostgreSQL", { skip: hasPostgres ? false : "postgresql not installed (apt-get install postgresql)" }, () => {
  after(() => pg?.stop());
  apiSuite("PostgreSQL", async () => {
    pg = await startPostgres();
    return pg.createDatabase("damselfly_api");
  });
});
