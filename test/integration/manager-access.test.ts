// Who may grant what, against a real manager: a granter grants only
// permissions it holds (roles it makes, roles it gives, users it manages),
// nobody changes their own role, and a personal access token acts only
// within its scopes (a job token sees none of its user's other tokens).
// Every refusal is checked to have changed nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startManager, type ManagerHandle } from "../helpers/manager.js";

const future = (ms: number) => new Date(Date.now() + ms).toISOString();

describe("manager access control", { timeout: 120_000 }, () => {
  let m: ManagerHandle;
  let root: string;
  const ids: Record<string, number> = {};

  const roleOf = async (name: string) =>
    (await m.api("GET", "/api/v1/users", { token: root })).body.find((u: { name: string }) => u.name === name)?.role as string | undefined;
  const roleNames = async () => (await m.api("GET", "/api/v1/roles", { token: root })).body.map((r: { name: string }) => r.name) as string[];

  before(async () => {
    m = await startManager();
    root = await m.signin();
    for (const [name, permissions] of [
      ["usermgr", ["user:write"]],
      ["rolemgr", ["role:write"]],
      ["operator", ["cluster:write", "job:read"]],
    ] as const) {
      const r = await m.api("POST", "/api/v1/roles", { token: root, body: { name, permissions } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    for (const [name, role] of [
      ["uma", "usermgr"],
      ["rita", "rolemgr"],
      ["otto", "operator"],
      ["umi", "usermgr"],
    ] as const) {
      const r = await m.api("POST", "/api/v1/users", { token: root, body: { name, password: `${name}-password-1`, role } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      ids[name] = r.body.id;
    }
  });
  after(() => m?.stop());

  test("a user with user:write only cannot give itself or anyone a role it does not hold, nor manage a stronger user", async () => {
    const uma = await m.signin("uma", "uma-password-1");
    const denied = async (method: string, path: string, body: unknown, why: RegExp) => {
      const r = await m.api(method, path, { token: uma, body });
      assert.equal(r.status, 403, `${method} ${path} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, "DF_ERR_PERMISSION_DENIED");
      assert.match(r.body.message, why);
    };
    await denied("PATCH", `/api/v1/users/${ids.uma}`, { role: "operator" }, /own role/);
    await denied("PATCH", `/api/v1/users/${ids.uma}`, { role: "usermgr" }, /own role/);
    await denied("POST", "/api/v1/users", { name: "op2", password: "op2-password-1", role: "operator" }, /cluster:write/);
    await denied("POST", "/api/v1/users", { name: "guest2", password: "guest2-password-1" }, /cluster:read, job:read/);
    await denied("PATCH", `/api/v1/users/${ids.umi}`, { role: "operator" }, /cluster:write/);
    // otto holds cluster:write: taking over his account would be a way to it.
    await denied("PATCH", `/api/v1/users/${ids.otto}`, { password: "taken-over-1" }, /cluster:write/);
    await denied("DELETE", `/api/v1/users/${ids.otto}`, undefined, /cluster:write/);
    await denied("PATCH", "/api/v1/users/1", { password: "taken-over-1" }, /\*/);
    assert.equal(await roleOf("uma"), "usermgr");
    assert.equal(await roleOf("umi"), "usermgr");
    assert.equal(await roleOf("otto"), "operator");
    await m.signin("otto", "otto-password-1");
    assert.equal(await roleOf("op2"), undefined);
    // What it may do: users with no more than it holds.
    const made = await m.api("POST", "/api/v1/users", { token: uma, body: { name: "uma2", password: "uma2-password-1", role: "usermgr" } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal((await m.api("PATCH", `/api/v1/users/${ids.umi}`, { token: uma, body: { password: "umi-password-2" } })).status, 200);
    assert.equal((await m.api("PATCH", `/api/v1/users/${ids.uma}`, { token: uma, body: { password: "uma-password-2" } })).status, 200, "own password");
  });

  test("a user with role:write cannot mint a role stronger than its own", async () => {
    const rita = await m.signin("rita", "rita-password-1");
    const before = await roleNames();
    for (const permissions of [["cluster:write", "job:write", "user:write", "role:write", "audit:read"], ["user:write"], ["role:write", "audit:read"]]) {
      const r = await m.api("POST", "/api/v1/roles", { token: rita, body: { name: "near-root", permissions } });
      assert.equal(r.status, 403, `${permissions}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, "DF_ERR_PERMISSION_DENIED");
    }
    assert.deepEqual(await roleNames(), before, "no role was made");
    // Within what it holds (write implies read).
    assert.equal((await m.api("POST", "/api/v1/roles", { token: rita, body: { name: "role-reader", permissions: ["role:read"] } })).status, 201);
  });

  test("nobody changes their own role, root included", async () => {
    const r = await m.api("PATCH", "/api/v1/users/1", { token: root, body: { role: "guest" } });
    assert.equal(r.status, 403);
    assert.match(r.body.message, /own role/);
    assert.equal(await roleOf("root"), "root");
    // Root manages everyone else.
    assert.equal((await m.api("PATCH", `/api/v1/users/${ids.umi}`, { token: root, body: { role: "operator" } })).status, 200);
  });

  test("a token grants only within its scopes; a job token cannot list or revoke its user's tokens", async () => {
    const mk = async (name: string, scopes: string[]) => {
      const r = await m.api("POST", "/api/v1/personal-access-tokens", { token: root, body: { name, scopes, expired_at: future(3_600_000) } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body as { id: number; token: string };
    };
    const jobTok = await mk("harbor", ["job"]);
    const other = await mk("ci", ["job", "cluster"]);
    const userTok = await mk("user-admin", ["user"]);

    const list = await m.api("GET", "/api/v1/personal-access-tokens", { token: jobTok.token });
    assert.equal(list.status, 403, JSON.stringify(list.body));
    assert.ok(!JSON.stringify(list.body).includes("user-admin"));
    const revoke = await m.api("DELETE", `/api/v1/personal-access-tokens/${other.id}`, { token: jobTok.token });
    assert.equal(revoke.status, 403);
    assert.equal((await m.api("DELETE", `/api/v1/personal-access-tokens/${jobTok.id}`, { token: jobTok.token })).status, 403, "not even itself");
    assert.equal((await m.api("GET", "/api/v1/scheduler-clusters", { token: other.token })).status, 200, "the other token still works");
    const mint = await m.api("POST", "/api/v1/personal-access-tokens", {
      token: jobTok.token,
      body: { name: "more", scopes: ["job"], expired_at: future(60_000) },
    });
    assert.equal(mint.status, 403);
    assert.equal((await m.api("POST", "/api/v1/users/signout", { token: jobTok.token })).status, 403);
    assert.equal((await m.api("GET", "/api/v1/users/me", { token: jobTok.token })).status, 200, "who am I: any signed-in caller");

    // Root's user-scoped token holds user:* only: it cannot give a role with cluster:write.
    const give = await m.api("POST", "/api/v1/users", { token: userTok.token, body: { name: "via-token", password: "via-token-pass-1", role: "operator" } });
    assert.equal(give.status, 403);
    assert.match(give.body.message, /cluster:write/);
    assert.equal((await m.api("PATCH", `/api/v1/users/${ids.otto}`, { token: userTok.token, body: { role: "root" } })).status, 403);
    assert.equal(await roleOf("otto"), "operator");
    const names = (await m.api("GET", "/api/v1/personal-access-tokens", { token: root })).body.map((t: { name: string }) => t.name);
    assert.deepEqual(names, ["harbor", "ci", "user-admin"], "no token was revoked or made");
  });
});
