import type { FastifyInstance } from "fastify";
import type { Logger } from "../../common/logger.js";
import type { Database } from "../db/database.js";

export interface AuditRetention {
  maxRows: number;
  maxAge: number;
}

export const SIGNIN_ROUTE = "/api/v1/users/signin";
// Rows older than maxAge go at start and this often after.
const AGE_SWEEP_MS = 10 * 60_000;

// Who changed what: every request that may change state (and every sign-in
// that was checked, failed or not) is one row. Bodies are not recorded: they
// may hold passwords or registry credentials. Sign-ins the throttle refused
// (429) are not rows: it counts them, and the failure that locked the key is
// a row already. The table is bounded: at most maxRows (plus one sweep's
// worth) and nothing older than maxAge.
export function installAudit(app: FastifyInstance, database: Database, log: Logger, retention: AuditRetention): void {
  const prune = pruner(database, log, retention);
  // Every tenth of maxRows inserted, the surplus goes.
  const every = Math.max(1, Math.min(1_000, Math.floor(retention.maxRows / 10)));
  let inserted = 0;
  let timer: NodeJS.Timeout | undefined;
  app.addHook("onReady", async () => {
    await prune();
    timer = setInterval(() => void prune(), AGE_SWEEP_MS);
    timer.unref();
  });
  app.addHook("onClose", async () => clearInterval(timer));
  app.addHook("onResponse", async (req, reply) => {
    if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return;
    const route = req.routeOptions.url;
    if (route === undefined || !(route.startsWith("/api/") || route.startsWith("/oapi/"))) return;
    if (route === SIGNIN_ROUTE && reply.statusCode === 429) return;
    const params = (req.params ?? {}) as Record<string, string>;
    const signinName = route === SIGNIN_ROUTE ? (req.body as { name?: unknown } | undefined)?.name : undefined;
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
      return;
    }
    if (++inserted % every === 0) await prune();
  });
}

// Deletes rows past the age and the count; one sweep at a time.
function pruner(database: Database, log: Logger, { maxRows, maxAge }: AuditRetention): () => Promise<void> {
  let running: Promise<void> | undefined;
  const sweep = async () => {
    const { db } = database;
    await db
      .deleteFrom("audits")
      .where("created_at", "<", new Date(Date.now() - maxAge).toISOString())
      .execute();
    // The newest row past the ones kept: it and everything older go.
    const edge = await db.selectFrom("audits").select("id").orderBy("id", "desc").limit(1).offset(maxRows).executeTakeFirst();
    if (edge) await db.deleteFrom("audits").where("id", "<=", edge.id).execute();
  };
  return () => {
    running ??= sweep()
      .catch((err: unknown) => log.warn({ err: (err as Error).message }, "audit pruning failed"))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
}
