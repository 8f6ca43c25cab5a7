// Every manager route declares who may call it (config.access), checked in
// one place: this enumerates the registered routes of the real app and calls
// each with a token whose scopes leave out what the route needs. A route
// added without a declaration fails the manager's start.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { managerSchema } from "../../src/common/schemas.js";
import { RESOURCES } from "../../src/manager/auth/permissions.js";
import { hashToken, newToken, PAT_PREFIX } from "../../src/manager/auth/secrets.js";
import { bootstrap } from "../../src/manager/bootstrap.js";
import { ClusterRegistry } from "../../src/manager/cluster-registry.js";
import { openDatabase, type Database } from "../../src/manager/db/database.js";
import { installAccess } from "../../src/manager/http/access.js";
import { buildApp } from "../../src/manager/http/app.js";
import { JobRunner } from "../../src/manager/jobs/job-runner.js";

let dir: string;
let database: Database;
let app: FastifyInstance;
let jobs: JobRunner;

async function pat(scopes: readonly string[]): Promise<string> {
  const token = newToken(PAT_PREFIX);
  const t = new Date().toISOString();
  await database.db
    .insertInto("personal_access_tokens")
    .values({
      name: `t-${scopes.join("-")}`,
      token_hash: hashToken(token),
      user_id: 1,
      scopes: JSON.stringify(scopes),
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      created_at: t,
      last_used_at: null,
    })
    .execute();
  return token;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "dfm-access-"));
  database = await openDatabase(`sqlite:${join(dir, "m.db")}`);
  await bootstrap(database, "root-password-1");
  const config = loadConfig(managerSchema, { env: {}, envPrefix: "MANAGER" });
  const logger = createLogger("fatal", join(dir, "log"));
  const registry = new ClusterRegistry(database, 30_000);
  jobs = new JobRunner(database, registry, logger, 60_000);
  app = await buildApp({ config, database, logger, registry, jobs, clusterToken: undefined });
  await app.ready();
});

after(async () => {
  await app?.close();
  await jobs?.close();
  await database?.close();
  rmSync(dir, { recursive: true, force: true });
});

const isApi = (url: string) => url.startsWith("/api/") || url.startsWith("/oapi/");

test("every API route declares its access; the rest only read public pages", () => {
  const routes = app.routeAccess;
  const api = routes.filter((r) => isApi(r.url));
  assert.ok(api.length >= 25, `only ${api.length} API routes seen`);
  for (const r of api) assert.ok(r.access !== undefined, `${r.method} ${r.url} declares no access`);
  const of = (method: string, url: string) => routes.find((r) => r.method === method && r.url === url)?.access;
  // The scheduler extender's verbs are POSTs that change nothing (kube-scheduler's protocol).
  const extender = (r: { method: string; url: string }) => r.method === "POST" && /^\/extender\/v1\/(prioritize|filter)$/.test(r.url);
  for (const r of routes.filter((x) => !isApi(x.url) && !extender(x))) {
    assert.ok(r.method === "GET" || r.method === "HEAD", `${r.method} ${r.url}: a non-API route that is not a read`);
  }
  assert.equal(of("POST", "/extender/v1/prioritize"), "public");
  assert.equal(of("POST", "/extender/v1/filter"), "public");
  assert.equal(of("POST", "/api/v1/users/signin"), "public");
  assert.equal(of("GET", "/api/v1/personal-access-tokens"), "session");
  assert.equal(of("DELETE", "/api/v1/personal-access-tokens/:id"), "session");
  assert.equal(of("POST", "/oapi/v1/jobs"), "job:write");
});

test("each route refuses a token whose scopes leave out what it needs, and a caller without a token", async () => {
  const allScopes = await pat(RESOURCES);
  const without = new Map<string, string>();
  for (const r of RESOURCES) without.set(r, await pat(RESOURCES.filter((x) => x !== r)));
  let checked = 0;
  for (const r of app.routeAccess.filter((x) => isApi(x.url) && x.access !== "public")) {
    const url = r.url.replace(/:(\w+)/g, "1");
    const call = (token?: string) =>
      app.inject({
        method: r.method as "GET",
        url,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(r.method === "GET" || r.method === "HEAD" ? {} : { "content-type": "application/json" }),
        },
        ...(r.method === "GET" || r.method === "HEAD" ? {} : { payload: "{}" }),
      });
    const anonymous = await call();
    assert.equal(anonymous.statusCode, 401, `${r.method} ${r.url} without a token`);
    if (r.access === "signed-in") continue;
    const token = r.access === "session" ? allScopes : without.get(r.access!.split(":")[0]!)!;
    const res = await call(token);
    assert.equal(res.statusCode, 403, `${r.method} ${r.url} (${r.access}) with a token lacking it: ${res.statusCode} ${res.body}`);
    if (r.method !== "HEAD") assert.equal(JSON.parse(res.body).code, "DF_ERR_PERMISSION_DENIED");
    checked++;
  }
  assert.ok(checked >= 20, `only ${checked} routes checked`);
  // The tokens' own user still has all of them.
  assert.equal((await database.db.selectFrom("personal_access_tokens").select("id").execute()).length, RESOURCES.length + 1, "no token was revoked");
});

test("an API route without a declaration fails the start", async () => {
  const bare = Fastify();
  installAccess(bare, database);
  bare.register(async (a) => {
    a.post("/api/v1/forgotten", async () => ({}));
  });
  await assert.rejects(async () => void (await bare.ready()), /POST \/api\/v1\/forgotten declares no config.access/);
  await bare.close().catch(() => undefined);
});
