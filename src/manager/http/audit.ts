import type { FastifyInstance } from "fastify";
import type { Logger } from "../../common/logger.js";
import type { Database } from "../db/database.js";

// Who changed what: every request that may change state (and every sign-in,
// failed or not) is one row. Bodies are not recorded: they may hold
// passwords or registry credentials.
export function installAudit(app: FastifyInstance, database: Database, log: Logger): void {
  app.addHook("onResponse", async (req, reply) => {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return;
    const route = req.routeOptions.url;
    if (route === undefined || !(route.startsWith("/api/") || route.startsWith("/oapi/"))) return;
    const params = (req.params ?? {}) as Record<string, string>;
    const signinName = route === "/api/v1/users/signin" ? (req.body as { name?: unknown } | undefined)?.name : undefined;
    const resource = route.replace(/^\/o?api\/v1\//, "").split("/")[0] ?? "";
    try {
      await database.db
        .insertInto("audits")
        .values({
          user_id: req.principal?.userId ?? null,
          user_name: req.principal?.userName ?? (typeof signinName === "string" ? signinName.slice(0, 64) : ""),
          method: req.method,
          path: route,
          resource,
          resource_id: String(params.id ?? ""),
          status_code: reply.statusCode,
          created_at: new Date().toISOString(),
        })
        .execute();
    } catch (err) {
      log.warn({ err: (err as Error).message }, "audit record failed");
    }
  });
}
