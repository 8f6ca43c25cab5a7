import type { FastifyRequest } from "fastify";
import { DamselflyError } from "../../common/errors.js";
import type { Database } from "../db/database.js";
import { allows, PERMISSION_RE, RESOURCES, type Action, type Resource } from "./permissions.js";
import { hashToken, PAT_PREFIX, SESSION_PREFIX } from "./secrets.js";

export interface Principal {
  userId: number;
  userName: string;
  roleName: string;
  permissions: string[];
  // Set when the request came with a personal access token.
  scopes?: string[];
}

declare module "fastify" {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const unauthenticated = (why: string) => new DamselflyError("DF_ERR_UNAUTHENTICATED", why);

// Resolves the bearer token (a session from sign-in, or a personal access
// token) to its user and role. Every failure is the same 401 to the caller;
// the reason is only in the message.
export async function authenticate(database: Database, req: FastifyRequest): Promise<Principal> {
  const header = req.headers.authorization;
  if (header === undefined) throw unauthenticated("missing Authorization: Bearer <token>");
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) throw unauthenticated("expected Authorization: Bearer <token>");
  const token = m[1]!;
  const { db } = database;
  const now = new Date().toISOString();
  let userId: number;
  let scopes: string[] | undefined;
  if (token.startsWith(SESSION_PREFIX)) {
    const s = await db.selectFrom("sessions").select(["user_id", "expires_at"]).where("token_hash", "=", hashToken(token)).executeTakeFirst();
    if (!s) throw unauthenticated("unknown session token");
    if (s.expires_at <= now) throw unauthenticated("session expired: sign in again");
    userId = s.user_id;
  } else if (token.startsWith(PAT_PREFIX)) {
    const t = await db
      .selectFrom("personal_access_tokens")
      .select(["id", "user_id", "expires_at", "scopes"])
      .where("token_hash", "=", hashToken(token))
      .executeTakeFirst();
    if (!t) throw unauthenticated("unknown personal access token");
    if (t.expires_at <= now) throw unauthenticated("personal access token expired");
    userId = t.user_id;
    scopes = JSON.parse(t.scopes) as string[];
    await db.updateTable("personal_access_tokens").set({ last_used_at: now }).where("id", "=", t.id).execute();
  } else {
    throw unauthenticated("unknown token type");
  }
  const u = await db
    .selectFrom("users")
    .innerJoin("roles", "roles.id", "users.role_id")
    .select(["users.id as id", "users.name as name", "roles.name as role", "roles.permissions as permissions"])
    .where("users.id", "=", userId)
    .executeTakeFirst();
  if (!u) throw unauthenticated("the token's user no longer exists");
  return { userId: u.id, userName: u.name, roleName: u.role, permissions: JSON.parse(u.permissions) as string[], ...(scopes ? { scopes } : {}) };
}

export function authorize(p: Principal, resource: Resource, action: Action): void {
  if (p.scopes && !p.scopes.includes(resource)) {
    throw new DamselflyError("DF_ERR_PERMISSION_DENIED", `the token's scopes (${p.scopes.join(", ") || "none"}) do not include ${resource}`);
  }
  if (!allows(p.permissions, resource, action)) {
    throw new DamselflyError("DF_ERR_PERMISSION_DENIED", `role ${p.roleName} may not ${action} ${resource}`);
  }
}

// Whether the principal holds a permission now: its role's, narrowed to its
// token's scopes. "*" is held only by root acting without a narrowing token.
export function holds(p: Principal, permission: string): boolean {
  if (permission === "*") return p.permissions.includes("*") && (!p.scopes || RESOURCES.every((r) => p.scopes!.includes(r)));
  const m = PERMISSION_RE.exec(permission);
  if (!m) return false;
  const resource = m[1] as Resource;
  return (!p.scopes || p.scopes.includes(resource)) && allows(p.permissions, resource, m[2] as Action);
}

// A granter grants only what it holds: a role it makes, or gives to a user,
// or a user it manages, may not hold anything it does not.
export function requireHoldsAll(p: Principal, permissions: readonly string[], what: string): void {
  const missing = permissions.filter((x) => !holds(p, x));
  if (missing.length > 0) {
    throw new DamselflyError("DF_ERR_PERMISSION_DENIED", `${what} needs ${missing.join(", ")}, which you do not hold: you can grant only what you hold`);
  }
}
