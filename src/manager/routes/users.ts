import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { DamselflyError } from "../../common/errors.js";
import { guard, type Principal } from "../auth/authenticate.js";
import { ROOT_ROLE } from "../auth/permissions.js";
import { DUMMY_PASSWORD_HASH, hashPassword, hashToken, newToken, SESSION_PREFIX, verifyPassword } from "../auth/secrets.js";
import { badRequest, conflict, isUniqueViolation, notFound } from "../http/errors.js";
import { now, type RouteContext } from "./context.js";
import { errorResponses, IdParams, Name, Password, UserBody } from "./schemas.js";

const SigninBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: 256 }) },
  { additionalProperties: false },
);
const CreateUserBody = Type.Object(
  { name: Name, password: Password, role: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
  { additionalProperties: false },
);
const UpdateUserBody = Type.Object(
  { password: Type.Optional(Password), role: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
  { additionalProperties: false },
);

type Db = RouteContext["database"]["db"];

// The queries the user routes share.
function userQueries(db: Db) {
  const view = (id: number) =>
    db
      .selectFrom("users")
      .innerJoin("roles", "roles.id", "users.role_id")
      .select(["users.id as id", "users.name as name", "roles.name as role", "users.created_at as created_at", "users.updated_at as updated_at"])
      .where("users.id", "=", id)
      .executeTakeFirst();
  const roleId = async (name: string) => {
    const r = await db.selectFrom("roles").select("id").where("name", "=", name).executeTakeFirst();
    if (!r) throw badRequest(`role ${JSON.stringify(name)} does not exist`);
    return r.id;
  };
  const rootCount = async () =>
    Number(
      (
        await db
          .selectFrom("users")
          .innerJoin("roles", "roles.id", "users.role_id")
          .select((eb) => eb.fn.countAll().as("n"))
          .where("roles.name", "=", ROOT_ROLE)
          .executeTakeFirstOrThrow()
      ).n,
    );
  return { view, roleId, rootCount };
}
type UserQueries = ReturnType<typeof userQueries>;

// user:write lets a role manage users, but only root makes or changes a
// root user: otherwise any user manager could make itself root.
function requireRootFor(p: Principal, what: string): void {
  if (!p.permissions.includes("*")) throw new DamselflyError("DF_ERR_PERMISSION_DENIED", `only root may ${what}`);
}

export function userRoutes(ctx: RouteContext) {
  const q = userQueries(ctx.database.db);
  return async (app: FastifyInstance) => {
    sessionRoutes(app, ctx, q);
    readRoutes(app, ctx, q);
    writeRoutes(app, ctx, q);
  };
}

function sessionRoutes(app: FastifyInstance, ctx: RouteContext, q: UserQueries): void {
  const { database } = ctx;
  const { db } = database;
  app.post<{ Body: Static<typeof SigninBody> }>(
    "/api/v1/users/signin",
    {
      schema: {
        tags: ["users"],
        summary: "sign in: returns a session token",
        body: SigninBody,
        response: { 200: Type.Object({ token: Type.String(), expires_at: Type.String(), user: UserBody }), ...errorResponses },
      },
    },
    async (req) => {
      const u = await db.selectFrom("users").select(["id", "name", "password_hash"]).where("name", "=", req.body.name).executeTakeFirst();
      const ok = await verifyPassword(req.body.password, u?.password_hash ?? DUMMY_PASSWORD_HASH);
      if (!u || !ok) throw new DamselflyError("DF_ERR_UNAUTHENTICATED", "wrong user name or password");
      const token = newToken(SESSION_PREFIX);
      const expires = new Date(Date.now() + ctx.config.server.sessionTtl).toISOString();
      await db
        .insertInto("sessions")
        .values({ token_hash: hashToken(token), user_id: u.id, expires_at: expires, created_at: now() })
        .execute();
      // Expired sessions are dropped as new ones are made.
      await db.deleteFrom("sessions").where("expires_at", "<=", now()).execute();
      const view = (await q.view(u.id))!;
      req.principal = { userId: u.id, userName: u.name, roleName: view.role, permissions: [] };
      return { token, expires_at: expires, user: view };
    },
  );

  app.post("/api/v1/users/signout", { schema: { tags: ["users"], summary: "end this session" }, preHandler: guard(database) }, async (req, reply) => {
    const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
    await db.deleteFrom("sessions").where("token_hash", "=", hashToken(token)).execute();
    return reply.status(204).send();
  });
}

function readRoutes(app: FastifyInstance, ctx: RouteContext, q: UserQueries): void {
  const { database } = ctx;
  const { db } = database;
  app.get(
    "/api/v1/users/me",
    {
      schema: {
        tags: ["users"],
        summary: "the signed-in user",
        response: { 200: Type.Intersect([UserBody, Type.Object({ permissions: Type.Array(Type.String()) })]) },
      },
      preHandler: guard(database),
    },
    async (req) => {
      const view = await q.view(req.principal!.userId);
      if (!view) throw notFound("user");
      return { ...view, permissions: req.principal!.permissions };
    },
  );

  app.get(
    "/api/v1/users",
    { schema: { tags: ["users"], summary: "list users", response: { 200: Type.Array(UserBody) } }, preHandler: guard(database, "user", "read") },
    async () =>
      db
        .selectFrom("users")
        .innerJoin("roles", "roles.id", "users.role_id")
        .select(["users.id as id", "users.name as name", "roles.name as role", "users.created_at as created_at", "users.updated_at as updated_at"])
        .orderBy("users.id")
        .execute(),
  );
}

function writeRoutes(app: FastifyInstance, ctx: RouteContext, q: UserQueries): void {
  const { database } = ctx;
  const { db } = database;
  app.post<{ Body: Static<typeof CreateUserBody> }>(
    "/api/v1/users",
    {
      schema: { tags: ["users"], summary: "create a user (role default: guest)", body: CreateUserBody, response: { 201: UserBody, ...errorResponses } },
      preHandler: guard(database, "user", "write"),
    },
    async (req, reply) => {
      if (req.body.role === ROOT_ROLE) requireRootFor(req.principal!, "create root users");
      const rid = await q.roleId(req.body.role ?? "guest");
      const t = now();
      try {
        const r = await db
          .insertInto("users")
          .values({ name: req.body.name, password_hash: await hashPassword(req.body.password), role_id: rid, created_at: t, updated_at: t })
          .returning("id")
          .executeTakeFirstOrThrow();
        return reply.status(201).send(await q.view(r.id));
      } catch (err) {
        if (isUniqueViolation(err)) throw conflict(`user ${req.body.name}`);
        throw err;
      }
    },
  );

  app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof UpdateUserBody> }>(
    "/api/v1/users/:id",
    {
      schema: {
        tags: ["users"],
        summary: "change a user's role or password",
        params: IdParams,
        body: UpdateUserBody,
        response: { 200: UserBody, ...errorResponses },
      },
      preHandler: guard(database, "user", "write"),
    },
    async (req) => {
      const target = await q.view(req.params.id);
      if (!target) throw notFound(`user ${req.params.id}`);
      if (target.role === ROOT_ROLE || req.body.role === ROOT_ROLE) requireRootFor(req.principal!, "change root users or grant root");
      if (target.role === ROOT_ROLE && req.body.role !== undefined && req.body.role !== ROOT_ROLE && (await q.rootCount()) <= 1) {
        throw badRequest("this is the last root user: make another root first");
      }
      const set: { updated_at: string; role_id?: number; password_hash?: string } = { updated_at: now() };
      if (req.body.role !== undefined) set.role_id = await q.roleId(req.body.role);
      if (req.body.password !== undefined) set.password_hash = await hashPassword(req.body.password);
      await db.updateTable("users").set(set).where("id", "=", req.params.id).execute();
      // A changed password or role ends the user's sessions.
      await db.deleteFrom("sessions").where("user_id", "=", req.params.id).execute();
      return q.view(req.params.id);
    },
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    "/api/v1/users/:id",
    { schema: { tags: ["users"], summary: "delete a user", params: IdParams }, preHandler: guard(database, "user", "write") },
    async (req, reply) => {
      if (req.params.id === req.principal!.userId) throw badRequest("you cannot delete yourself");
      if ((await q.view(req.params.id))?.role === ROOT_ROLE) requireRootFor(req.principal!, "delete root users");
      await db.deleteFrom("personal_access_tokens").where("user_id", "=", req.params.id).execute();
      await db.deleteFrom("sessions").where("user_id", "=", req.params.id).execute();
      const r = await db.deleteFrom("users").where("id", "=", req.params.id).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw notFound(`user ${req.params.id}`);
      return reply.status(204).send();
    },
  );
}
