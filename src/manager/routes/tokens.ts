import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { RESOURCES } from "../auth/permissions.js";
import { hashToken, newToken, PAT_PREFIX } from "../auth/secrets.js";
import { badRequest, notFound } from "../http/errors.js";
import { now, type RouteContext } from "./context.js";
import { errorResponses, IdParams } from "./schemas.js";

const MAX_LIFETIME_MS = 5 * 365 * 24 * 3_600_000;

const TokenBody = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  expires_at: Type.String(),
  created_at: Type.String(),
  last_used_at: Type.Union([Type.String(), Type.Null()]),
});
const CreateTokenBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64 }),
    scopes: Type.Array(Type.Union(RESOURCES.map((r) => Type.Literal(r))), { minItems: 1, uniqueItems: true }),
    // RFC 3339 time; Dragonfly's API spells it expired_at.
    expired_at: Type.String({ format: "date-time" }),
  },
  { additionalProperties: false },
);

// Personal access tokens belong to the user who makes them and act as that
// user, narrowed to their scopes. The token is in the create answer only.
// They are listed, made and revoked from a signed-in session only: a token
// of any scope sees none of its user's other tokens.
export function tokenRoutes(ctx: RouteContext) {
  const { database } = ctx;
  const { db } = database;
  const view = (t: { id: number; name: string; scopes: string; expires_at: string; created_at: string; last_used_at: string | null }) => ({
    ...t,
    scopes: JSON.parse(t.scopes) as string[],
  });
  const cols = ["id", "name", "scopes", "expires_at", "created_at", "last_used_at"] as const;

  return async (app: FastifyInstance) => {
    app.get(
      "/api/v1/personal-access-tokens",
      {
        schema: { tags: ["personal access tokens"], summary: "your tokens (never their values)", response: { 200: Type.Array(TokenBody) } },
        config: { access: "session" },
      },
      async (req) =>
        (await db.selectFrom("personal_access_tokens").select(cols).where("user_id", "=", req.principal!.userId).orderBy("id").execute()).map(view),
    );

    app.post<{ Body: Static<typeof CreateTokenBody> }>(
      "/api/v1/personal-access-tokens",
      {
        schema: {
          tags: ["personal access tokens"],
          summary: "create a token: its value is shown once",
          body: CreateTokenBody,
          response: { 201: Type.Intersect([TokenBody, Type.Object({ token: Type.String() })]), ...errorResponses },
        },
        config: { access: "session" },
      },
      async (req, reply) => {
        // Only a session gets here (access "session"): a leaked token cannot
        // mint more.
        const expires = Date.parse(req.body.expired_at);
        if (!Number.isFinite(expires) || expires <= Date.now()) throw badRequest("expired_at must be in the future");
        if (expires - Date.now() > MAX_LIFETIME_MS) throw badRequest("expired_at may be at most 5 years away");
        const token = newToken(PAT_PREFIX);
        const row = await db
          .insertInto("personal_access_tokens")
          .values({
            name: req.body.name,
            token_hash: hashToken(token),
            user_id: req.principal!.userId,
            scopes: JSON.stringify(req.body.scopes),
            expires_at: new Date(expires).toISOString(),
            created_at: now(),
            last_used_at: null,
          })
          .returning(cols)
          .executeTakeFirstOrThrow();
        return reply.status(201).send({ ...view(row), token });
      },
    );

    app.delete<{ Params: Static<typeof IdParams> }>(
      "/api/v1/personal-access-tokens/:id",
      { schema: { tags: ["personal access tokens"], summary: "revoke one of your tokens", params: IdParams }, config: { access: "session" } },
      async (req, reply) => {
        const r = await db.deleteFrom("personal_access_tokens").where("id", "=", req.params.id).where("user_id", "=", req.principal!.userId).executeTakeFirst();
        if (Number(r.numDeletedRows) === 0) throw notFound(`token ${req.params.id}`);
        return reply.status(204).send();
      },
    );
  };
}
