import { createRequire } from "node:module";
import Fastify, { type FastifyInstance } from "fastify";
import { version } from "../../common/version.js";
import { auditRoutes } from "../routes/audits.js";
import { clusterRoutes } from "../routes/clusters.js";
import { extenderRoutes } from "../routes/extender.js";
import { imageRoutes } from "../routes/images.js";
import type { RouteContext } from "../routes/context.js";
import { jobRoutes } from "../routes/jobs.js";
import { roleRoutes } from "../routes/roles.js";
import { sessionRoutes } from "../routes/sessions.js";
import { tokenRoutes } from "../routes/tokens.js";
import { userRoutes } from "../routes/users.js";
import { managerService } from "../rpc/manager-service.js";
import { installAccess } from "./access.js";
import { installAudit } from "./audit.js";
import { installErrorHandlers } from "./errors.js";
import { consoleRoutes } from "./console.js";
import type { Health } from "../../common/health.js";
import type { TlsIdentity } from "../../common/tls/identity.js";
import { createManagerServer } from "./listener.js";
import type { ManagerMetrics } from "../metrics.js";

export interface Observability {
  metrics?: ManagerMetrics;
  // Answers /healthz and /readyz before Fastify (no auth, no audit).
  health?: Health;
}

const require = createRequire(import.meta.url);

// One HTTP/1.1 port (HTTPS with `tls`): the components' Connect RPC
// (ManagerService) goes to Connect, everything else (REST, open API, docs,
// console) to Fastify (see listener.ts).
export async function buildApp(ctx: RouteContext, obs: Observability = {}, tls?: TlsIdentity): Promise<FastifyInstance> {
  const { metrics, health } = obs;
  const service = managerService(ctx.registry, ctx.clusterToken);
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: false } },
    serverFactory: (handler) =>
      createManagerServer(handler, { service, ...(metrics ? { metrics } : {}), ...(health ? { health } : {}), ...(tls ? { tls } : {}) }),
  });
  if (metrics) {
    app.addHook("onResponse", async (req, reply) => {
      metrics.request(req.routeOptions.url ?? "unmatched", req.method, reply.statusCode, reply.elapsedTime / 1000);
    });
  }
  installErrorHandlers(app, ctx.logger);
  installAccess(app, ctx.database);
  installAudit(app, ctx.database, ctx.logger, ctx.config.audit);

  await app.register(require("@fastify/swagger") as typeof import("@fastify/swagger").default, {
    openapi: {
      info: {
        title: "Damselfly manager",
        version: version(),
        description:
          "Control plane: clusters, users and access, preheat jobs. Authenticate with `Authorization: Bearer <session token or personal access token>`.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(require("@fastify/swagger-ui") as typeof import("@fastify/swagger-ui").default, { routePrefix: "/docs" });

  app.get("/healthy", { schema: { hide: true }, config: { access: "public" } }, async () => ({ status: "ok" }));
  app.get("/api/v1/openapi.json", { schema: { hide: true }, config: { access: "public" } }, async () => app.swagger());
  await app.register(sessionRoutes(ctx));
  await app.register(userRoutes(ctx));
  await app.register(roleRoutes(ctx));
  await app.register(tokenRoutes(ctx));
  await app.register(clusterRoutes(ctx));
  await app.register(jobRoutes(ctx));
  await app.register(auditRoutes(ctx));
  await app.register(extenderRoutes(ctx.locality, { requireClientCert: tls !== undefined }));
  await app.register(imageRoutes(ctx));
  await app.register(consoleRoutes());
  return app;
}
