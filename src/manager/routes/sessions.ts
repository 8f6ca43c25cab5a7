import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import { DamselflyError } from "../../common/errors.js";
import { DUMMY_PASSWORD_HASH, hashPassword, hashToken, newToken, SESSION_PREFIX, verifyPassword } from "../auth/secrets.js";
import { SigninThrottle, type Attempt } from "../auth/signin-throttle.js";
import { SIGNIN_ROUTE } from "../http/audit.js";
import { now, type RouteContext } from "./context.js";
import { errorResponses, UserBody } from "./schemas.js";
import { userQueries } from "./user-queries.js";

const SigninBody = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: 256 }) },
  { additionalProperties: false },
);

function throttled(reply: FastifyReply, retryAfterMs: number, why: string): DamselflyError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  reply.header("retry-after", String(seconds));
  return new DamselflyError("DF_ERR_SIGNIN_THROTTLED", `${why}: retry in ${seconds} s`);
}

// Sign-in and sign-out: sessions. Sign-in is throttled per account and per
// address (auth/signin-throttle.ts) before any password is hashed.
export function sessionRoutes(ctx: RouteContext, throttle = new SigninThrottle()) {
  const { database, logger } = ctx;
  const { db } = database;
  const q = userQueries(db);
  return async (app: FastifyInstance) => {
    app.post<{ Body: Static<typeof SigninBody> }>(
      SIGNIN_ROUTE,
      {
        schema: {
          tags: ["users"],
          summary: "sign in: returns a session token (429 with Retry-After after repeated failures)",
          body: SigninBody,
          response: { 200: Type.Object({ token: Type.String(), expires_at: Type.String(), user: UserBody }), ...errorResponses },
        },
        config: { access: "public" },
      },
      async (req, reply) => {
        const { name, password } = req.body;
        const admission = throttle.admit(name, req.ip);
        if ("retryAfterMs" in admission) {
          throw throttled(reply, admission.retryAfterMs, `too many failed sign-ins for this ${admission.reason}`);
        }
        const attempt = admission.attempt;
        let u: { id: number; name: string; password_hash: string } | undefined;
        let verified: { ok: boolean; rehash: boolean };
        try {
          u = await db.selectFrom("users").select(["id", "name", "password_hash"]).where("name", "=", name).executeTakeFirst();
          verified = await verifyPassword(password, u?.password_hash ?? DUMMY_PASSWORD_HASH);
        } catch (err) {
          attempt.abandoned();
          if (err instanceof DamselflyError && err.code === "DF_ERR_SIGNIN_THROTTLED") throw throttled(reply, 1_000, err.message);
          throw err;
        }
        if (!u || !verified.ok) {
          failed(attempt, name, req.ip);
          throw new DamselflyError("DF_ERR_UNAUTHENTICATED", "wrong user name or password");
        }
        attempt.succeeded();
        // A hash made with older parameters is replaced while the password is at hand.
        if (verified.rehash) await rehash(u.id, password);
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

    app.post("/api/v1/users/signout", { schema: { tags: ["users"], summary: "end this session" }, config: { access: "session" } }, async (req, reply) => {
      const token = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
      await db.deleteFrom("sessions").where("token_hash", "=", hashToken(token)).execute();
      return reply.status(204).send();
    });
  };

  function failed(attempt: Attempt, name: string, remote: string): void {
    if (attempt.failed()) logger.warn({ user: name.slice(0, 64), remote }, "sign-in locked after repeated failures");
  }

  async function rehash(id: number, password: string): Promise<void> {
    try {
      await db
        .updateTable("users")
        .set({ password_hash: await hashPassword(password) })
        .where("id", "=", id)
        .execute();
    } catch (err) {
      // The old hash still works: the next sign-in tries again.
      logger.warn({ userId: id, err: (err as Error).message }, "rehashing a password failed");
    }
  }
}
