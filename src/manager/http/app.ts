import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import Fastify, { type FastifyInstance } from "fastify";
import { version } from "../../common/version.js";
import { managerv1 } from "../../protocol/index.js";
import { auditRoutes } from "../routes/audits.js";
import { clusterRoutes } from "../routes/clusters.js";
import type { RouteContext } from "../routes/context.js";
import { jobRoutes } from "../routes/jobs.js";
import { roleRoutes } from "../routes/roles.js";
import { tokenRoutes } from "../routes/tokens.js";
import { userRoutes } from "../routes/users.js";
import { managerService } from "../rpc/manager-service.js";
import { installAudit } from "./audit.js";
import { installErrorHandlers } from "./errors.js";
import { consoleRoutes } from "./console.js";

const require = createRequire(import.meta.url);

// One HTTP/1.1 port: the components' Connect RPC (ManagerService) goes to
// Connect, everything else (REST, open API, docs, console) to Fastify.
export async function buildApp(ctx: RouteContext): Promise<FastifyInstance> {
  const connect = connectNodeAdapter({ routes: (router) => router.service(managerv1.ManagerService, managerService(ctx.registry, ctx.clusterToken)) });
  const rpcPrefix = `/${managerv1.ManagerService.typeName}/`;
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: false } },
    serverFactory: (handler) =>
      createServer((req: IncomingMessage, res: ServerResponse) => {
        if (req.url?.startsWith(rpcPrefix)) connect(req, res);
        else handler(req, res);
      }),
  });
  installErrorHandlers(app, ctx.logger);
  installAudit(app, ctx.database, ctx.logger);

  await app.register(require("@fastify/swagger") as typeof import("@fastify/swagger").default, {
    openapi: {
      info: { title: "Damselfly manager", version: version(), description: "Control plane: clusters, users and access, preheat jobs. Authenticate with `Authorization: Bearer <session token or personal access token>`." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(require("@fastify/swagger-ui") as typeof import("@fastify/swagger-ui").default, { routePrefix: "/docs" });

  app.get("/healthy", { schema: { hide: true } }, async () => ({ status: "ok" }));
  app.get("/api/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  await app.register(userRoutes(ctx));
  await app.register(roleRoutes(ctx));
  await app.register(tokenRoutes(ctx));
  await app.register(clusterRoutes(ctx));
  await app.register(jobRoutes(ctx));
  await app.register(auditRoutes(ctx));
  await app.register(consoleRoutes());
  return app;
}
