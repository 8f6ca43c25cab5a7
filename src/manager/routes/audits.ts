import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { RouteContext } from "./context.js";

const Query = Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }), before_id: Type.Optional(Type.Integer({ minimum: 1 })) });
const AuditBody = Type.Object({
  id: Type.Integer(),
  user_id: Type.Union([Type.Integer(), Type.Null()]),
  user_name: Type.String(),
  method: Type.String(),
  path: Type.String(),
  resource: Type.String(),
  resource_id: Type.String(),
  status_code: Type.Integer(),
  created_at: Type.String(),
});

export function auditRoutes(ctx: RouteContext) {
  const { database } = ctx;
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: Static<typeof Query> }>(
      "/api/v1/audits",
      {
        schema: { tags: ["audits"], summary: "who changed what, newest first", querystring: Query, response: { 200: Type.Array(AuditBody) } },
        config: { access: "audit:read" },
      },
      async (req) => {
        let q = database.db.selectFrom("audits").selectAll().orderBy("id", "desc").limit(req.query.limit);
        if (req.query.before_id !== undefined) q = q.where("id", "<", req.query.before_id);
        return q.execute();
      },
    );
  };
}
