import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { DamselflyError } from "../../common/errors.js";
import { requireHoldsAll, type Principal } from "../auth/authenticate.js";
import { GUEST_ROLE, ROOT_ROLE } from "../auth/permissions.js";
import { hashPassword } from "../auth/secrets.js";
import { badRequest, conflict, isUniqueViolation, notFound } from "../http/errors.js";
import { now, type RouteContext } from "./context.js";
import { errorResponses, IdParams, Name, Password, UserBody } from "./schemas.js";
import { userQueries, type UserQueries } from "./user-queries.js";

const CreateUserBody = Type.Object(
  { name: Name, password: Password, role: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
  { additionalProperties: false },
);
const UpdateUserBody = Type.Object(
  { password: Type.Optional(Password), role: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
  { additionalProperties: false },
);

// Who may manage whom: user:write lets a role manage users, but only users
// whose role holds nothing the manager does not (so root is managed by root
// only), and only into roles it holds all of. Nobody changes their own role.
async function requireManages(q: UserQueries, p: Principal, targetId: number, what: string): Promise<void> {
  const target = await q.roleOf(targetId);
  if (!target) throw notFound(`user ${targetId}`);
  requireHoldsAll(p, target.permissions, `${what} (a user with role ${target.name})`);
}

export function userRoutes(ctx: RouteContext) {
  const q = userQueries(ctx.database.db);
  return async (app: FastifyInstance) => {
    readRoutes(app, ctx, q);
    writeRoutes(app, ctx, q);
  };
}

function readRoutes(app: FastifyInstance, ctx: RouteContext, q: UserQueries): void {
  const { db } = ctx.database;
  app.get(
    "/api/v1/users/me",
    {
      schema: {
        tags: ["users"],
        summary: "the signed-in user",
        response: { 200: Type.Intersect([UserBody, Type.Object({ permissions: Type.Array(Type.String()) })]) },
      },
      config: { access: "signed-in" },
    },
    async (req) => {
      const view = await q.view(req.principal!.userId);
      if (!view) throw notFound("user");
      return { ...view, permissions: req.principal!.permissions };
    },
  );

  app.get(
    "/api/v1/users",
    { schema: { tags: ["users"], summary: "list users", response: { 200: Type.Array(UserBody) } }, config: { access: "user:read" } },
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
  const { db } = ctx.database;
  app.post<{ Body: Static<typeof CreateUserBody> }>(
    "/api/v1/users",
    {
      schema: { tags: ["users"], summary: "create a user (role default: guest)", body: CreateUserBody, response: { 201: UserBody, ...errorResponses } },
      config: { access: "user:write" },
    },
    async (req, reply) => {
      const role = await q.role(req.body.role ?? GUEST_ROLE);
      requireHoldsAll(req.principal!, role.permissions, `giving role ${role.name}`);
      const t = now();
      try {
        const r = await db
          .insertInto("users")
          .values({ name: req.body.name, password_hash: await hashPassword(req.body.password), role_id: role.id, created_at: t, updated_at: t })
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
        summary: "change a user's role or password (not your own role)",
        params: IdParams,
        body: UpdateUserBody,
        response: { 200: UserBody, ...errorResponses },
      },
      config: { access: "user:write" },
    },
    async (req) => {
      const p = req.principal!;
      await requireManages(q, p, req.params.id, "changing this user");
      const set: { updated_at: string; role_id?: number; password_hash?: string } = { updated_at: now() };
      if (req.body.role !== undefined) {
        if (req.params.id === p.userId) throw new DamselflyError("DF_ERR_PERMISSION_DENIED", "nobody changes their own role: ask another user manager");
        const role = await q.role(req.body.role);
        requireHoldsAll(p, role.permissions, `giving role ${role.name}`);
        const current = await q.roleOf(req.params.id);
        if (current?.name === ROOT_ROLE && role.name !== ROOT_ROLE && (await q.rootCount()) <= 1) {
          throw badRequest("this is the last root user: make another root first");
        }
        set.role_id = role.id;
      }
      if (req.body.password !== undefined) set.password_hash = await hashPassword(req.body.password);
      await db.updateTable("users").set(set).where("id", "=", req.params.id).execute();
      // A changed password or role ends the user's sessions.
      await db.deleteFrom("sessions").where("user_id", "=", req.params.id).execute();
      return q.view(req.params.id);
    },
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    "/api/v1/users/:id",
    { schema: { tags: ["users"], summary: "delete a user", params: IdParams }, config: { access: "user:write" } },
    async (req, reply) => {
      if (req.params.id === req.principal!.userId) throw badRequest("you cannot delete yourself");
      await requireManages(q, req.principal!, req.params.id, "deleting this user");
      await db.deleteFrom("personal_access_tokens").where("user_id", "=", req.params.id).execute();
      await db.deleteFrom("sessions").where("user_id", "=", req.params.id).execute();
      const r = await db.deleteFrom("users").where("id", "=", req.params.id).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw notFound(`user ${req.params.id}`);
      return reply.status(204).send();
    },
  );
}
