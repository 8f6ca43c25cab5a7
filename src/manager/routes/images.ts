import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { imageHolders } from "../extender/image-holders.js";
import { configuredRegistries } from "../extender/known-registries.js";
import type { RouteContext } from "./context.js";
import { errorResponses } from "./schemas.js";

// Layer locality: which nodes hold which layers of an image. Resolves the
// image at its registry (only one the daemons pulled from: 400 otherwise)
// and asks the schedulers, on each call.
const Query = Type.Object({
  image: Type.String({ minLength: 1, maxLength: 1024 }),
  platform: Type.String({ minLength: 3, maxLength: 64, pattern: "^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$", default: "linux/amd64" }),
});
const Layer = Type.Object({ digest: Type.String(), size: Type.Integer(), task_id: Type.String(), nodes: Type.Array(Type.String()) });
const Answer = Type.Object({ image: Type.String(), platform: Type.String(), layers: Type.Array(Layer) });

const TIMEOUT_MS = 30_000;

export function imageRoutes(ctx: RouteContext) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: Static<typeof Query> }>(
      "/api/v1/images/layers",
      {
        schema: { tags: ["images"], summary: "which nodes hold which layers of an image", querystring: Query, response: { 200: Answer, ...errorResponses } },
        config: { access: "cluster:read" },
      },
      async (req) => {
        const deps = {
          ...ctx.jobs.schedulerAccess(),
          configured: configuredRegistries(ctx.config.extender.registries),
          logger: ctx.logger,
          nodeOf: ctx.nodeOf,
        };
        const layers = await imageHolders(req.query.image, req.query.platform, deps, AbortSignal.timeout(TIMEOUT_MS));
        return { image: req.query.image, platform: req.query.platform, layers };
      },
    );
  };
}
