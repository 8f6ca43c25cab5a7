import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { requireHoldsAll } from "../auth/authenticate.js";
import { badRequest, conflict, isUniqueViolation, notFound } from "../http/errors.js";
import { now, type RouteContext } from "./context.js";
import { errorResponses, IdParams, Name, Permission } from "./schemas.js";

const RoleBody = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  permissions: Type.Array(Type.String()),
  builtin: Type.Boolean(),
});
const CreateRoleBody = Type.Object(
  { name: Name, description: Type.Optional(Type.String({ maxLength: 512 })), permissions: Type.Array(Permission, { maxItems: 32, uniqueItems: true }) },
  { additionalProperties: false },
);

// Custom roles. A role's permissions must all be held by whoever makes it
// (a role:write holder cannot mint a role stronger than its own).
export function roleRoutes(ctx: RouteContext) {
  const { database } = ctx;
  const { db } = database;
  const view = (r: { id: number; name: string; description: string; permissions: string; builtin: number }) => ({
    ...r,
    permissions: JSON.parse(r.permissions) as string[],
    builtin: r.builtin === 1,
  });

  return async (app: FastifyInstance) => {
    app.get(
      "/api/v1/roles",
      { schema: { tags: ["roles"], summary: "list roles", response: { 200: Type.Array(RoleBody) } }, config: { access: "role:read" } },
      async () => (await db.selectFrom("roles").select(["id", "name", "description", "permissions", "builtin"]).orderBy("id").execute()).map(view),
    );

    app.post<{ Body: Static<typeof CreateRoleBody> }>(
      "/api/v1/roles",
      {
        schema: { tags: ["roles"], summary: "create a custom role", body: CreateRoleBody, response: { 201: RoleBody, ...errorResponses } },
        config: { access: "role:write" },
      },
      async (req, reply) => {
        if (req.body.permissions.includes("*")) throw badRequest("only the built-in root role holds every permission");
        requireHoldsAll(req.principal!, req.body.permissions, `role ${req.body.name}`);
        try {
          const r = await db
            .insertInto("roles")
            .values({
              name: req.body.name,
              description: req.body.description ?? "",
              permissions: JSON.stringify(req.body.permissions),
              builtin: 0,
              created_at: now(),
            })
            .returning(["id", "name", "description", "permissions", "builtin"])
            .executeTakeFirstOrThrow();
          return reply.status(201).send(view(r));
        } catch (err) {
          if (isUniqueViolation(err)) throw conflict(`role ${req.body.name}`);
          throw err;
        }
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      "/api/v1/roles/:id",
      { schema: { tags: ["roles"], summary: "delete a custom role nobody holds", params: IdParams }, config: { access: "role:write" } },
      async (req, reply) => {
        const r = await db.selectFrom("roles").select(["builtin"]).where("id", "=", req.params.id).executeTakeFirst();
        if (!r) throw notFound(`role ${req.params.id}`);
        if (r.builtin === 1) throw badRequest("built-in roles cannot be deleted");
        const holder = await db.selectFrom("users").select("id").where("role_id", "=", req.params.id).executeTakeFirst();
        if (holder) throw badRequest("the role is still held by a user");
        await db.deleteFrom("roles").where("id", "=", req.params.id).execute();
        return reply.status(204).send();
      },
    );
  };
}
