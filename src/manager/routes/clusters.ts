import { Type, type Static, type TInteger, type TOptional } from "@sinclair/typebox";
import { CLUSTER_CONFIG, CLUSTER_CONFIG_DESCRIPTION, type ClusterConfig, type ClusterConfigName } from "../../common/cluster-config.js";
import type { FastifyInstance } from "fastify";
import type { SchedulerCluster } from "../db/tables.js";
import { badRequest, conflict, isUniqueViolation, notFound } from "../http/errors.js";
import { now, type RouteContext } from "./context.js";
import { errorResponses, IdParams, Name } from "./schemas.js";

// One optional integer per dynamic key, bounds from the table.
const ConfigBody = Type.Object(
  Object.fromEntries(CLUSTER_CONFIG.map((k) => [k.key, Type.Optional(Type.Integer({ minimum: k.min, maximum: k.max }))])) as Record<
    ClusterConfigName,
    TOptional<TInteger>
  >,
  { additionalProperties: false, description: CLUSTER_CONFIG_DESCRIPTION },
);
const ClusterBody = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  config: ConfigBody,
  created_at: Type.String(),
  updated_at: Type.String(),
});
const CreateClusterBody = Type.Object(
  { name: Name, description: Type.Optional(Type.String({ maxLength: 512 })), config: Type.Optional(ConfigBody) },
  { additionalProperties: false },
);
const UpdateClusterBody = Type.Object(
  { name: Type.Optional(Name), description: Type.Optional(Type.String({ maxLength: 512 })), config: Type.Optional(ConfigBody) },
  { additionalProperties: false },
);
const SchedulerBody = Type.Object({
  id: Type.Integer(),
  cluster_id: Type.Integer(),
  hostname: Type.String(),
  ip: Type.String(),
  port: Type.Integer(),
  state: Type.String(),
  last_seen_at: Type.String(),
});
const HostBody = Type.Object({
  id: Type.String(),
  hostname: Type.String(),
  ip: Type.String(),
  type: Type.String(),
  upload_port: Type.Integer(),
  api_port: Type.Integer(),
  upload_bytes_total: Type.Number(),
  concurrent_uploads: Type.Integer(),
  scheduler_id: Type.Integer(),
});

function clusterLookup(ctx: RouteContext) {
  const { db } = ctx.database;
  const view = (c: SchedulerCluster) => ({ ...c, config: JSON.parse(c.config) as ClusterConfig });
  const get = async (id: number) => {
    const c = await db.selectFrom("scheduler_clusters").selectAll().where("id", "=", id).executeTakeFirst();
    if (!c) throw notFound(`scheduler cluster ${id}`);
    return c;
  };
  return { view, get };
}

export function clusterRoutes(ctx: RouteContext) {
  return async (app: FastifyInstance) => {
    clusterCrudRoutes(app, ctx);
    clusterChangeRoutes(app, ctx);
    clusterMemberRoutes(app, ctx);
  };
}

// Clusters themselves: list, create, read.
function clusterCrudRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { database } = ctx;
  const { db } = database;
  const { view, get } = clusterLookup(ctx);
  app.get(
    "/api/v1/scheduler-clusters",
    {
      schema: { tags: ["clusters"], summary: "list scheduler clusters", response: { 200: Type.Array(ClusterBody) } },
      config: { access: "cluster:read" },
    },
    async () => (await db.selectFrom("scheduler_clusters").selectAll().orderBy("id").execute()).map(view),
  );

  app.post<{ Body: Static<typeof CreateClusterBody> }>(
    "/api/v1/scheduler-clusters",
    {
      schema: { tags: ["clusters"], summary: "create a scheduler cluster", body: CreateClusterBody, response: { 201: ClusterBody, ...errorResponses } },
      config: { access: "cluster:write" },
    },
    async (req, reply) => {
      const t = now();
      try {
        const c = await db
          .insertInto("scheduler_clusters")
          .values({ name: req.body.name, description: req.body.description ?? "", config: JSON.stringify(req.body.config ?? {}), created_at: t, updated_at: t })
          .returningAll()
          .executeTakeFirstOrThrow();
        return reply.status(201).send(view(c));
      } catch (err) {
        if (isUniqueViolation(err)) throw conflict(`scheduler cluster ${req.body.name}`);
        throw err;
      }
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    "/api/v1/scheduler-clusters/:id",
    {
      schema: { tags: ["clusters"], summary: "one scheduler cluster", params: IdParams, response: { 200: ClusterBody, ...errorResponses } },
      config: { access: "cluster:read" },
    },
    async (req) => view(await get(req.params.id)),
  );
}

// Rename or reconfigure a cluster, delete it.
function clusterChangeRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { database, registry } = ctx;
  const { db } = database;
  const { view, get } = clusterLookup(ctx);
  app.patch<{ Params: Static<typeof IdParams>; Body: Static<typeof UpdateClusterBody> }>(
    "/api/v1/scheduler-clusters/:id",
    {
      schema: {
        tags: ["clusters"],
        summary: "rename a cluster or replace its dynamic config (schedulers apply it at their next keep-alive)",
        params: IdParams,
        body: UpdateClusterBody,
        response: { 200: ClusterBody, ...errorResponses },
      },
      config: { access: "cluster:write" },
    },
    async (req) => {
      await get(req.params.id);
      const set: { updated_at: string; name?: string; description?: string; config?: string } = { updated_at: now() };
      if (req.body.name !== undefined) set.name = req.body.name;
      if (req.body.description !== undefined) set.description = req.body.description;
      if (req.body.config !== undefined) set.config = JSON.stringify(req.body.config);
      try {
        await db.updateTable("scheduler_clusters").set(set).where("id", "=", req.params.id).execute();
      } catch (err) {
        if (isUniqueViolation(err)) throw conflict(`scheduler cluster ${req.body.name}`);
        throw err;
      }
      return view(await get(req.params.id));
    },
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    "/api/v1/scheduler-clusters/:id",
    { schema: { tags: ["clusters"], summary: "delete a cluster with no active scheduler", params: IdParams }, config: { access: "cluster:write" } },
    async (req, reply) => {
      await get(req.params.id);
      if ((await registry.activeSchedulers([req.params.id])).length > 0) throw badRequest("the cluster still has active schedulers");
      await db.deleteFrom("schedulers").where("cluster_id", "=", req.params.id).execute();
      await db.deleteFrom("scheduler_clusters").where("id", "=", req.params.id).execute();
      return reply.status(204).send();
    },
  );
}

// What a cluster holds now: its schedulers and the hosts they see.
function clusterMemberRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { database, registry } = ctx;
  const { db } = database;
  const { get } = clusterLookup(ctx);
  app.get(
    "/api/v1/schedulers",
    {
      schema: { tags: ["clusters"], summary: "every scheduler that ever registered, with its state", response: { 200: Type.Array(SchedulerBody) } },
      config: { access: "cluster:read" },
    },
    async () =>
      (await db.selectFrom("schedulers").selectAll().orderBy("id").execute()).map((s) => ({
        id: s.id,
        cluster_id: s.cluster_id,
        hostname: s.hostname,
        ip: s.ip,
        port: s.port,
        state: registry.isActive(s) ? "active" : "inactive",
        last_seen_at: s.last_seen_at,
      })),
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    "/api/v1/scheduler-clusters/:id/hosts",
    {
      schema: {
        tags: ["clusters"],
        summary: "seed peers and peers the cluster's schedulers see now",
        params: IdParams,
        response: { 200: Type.Array(HostBody), ...errorResponses },
      },
      config: { access: "cluster:read" },
    },
    async (req) => {
      await get(req.params.id);
      return (await registry.hosts(req.params.id)).map((h) => ({
        id: h.id,
        hostname: h.hostname,
        ip: h.ip,
        type: h.seed ? "seed" : "normal",
        upload_port: h.uploadPort,
        api_port: h.apiPort,
        upload_bytes_total: h.uploadBytesTotal,
        concurrent_uploads: h.concurrentUploads,
        scheduler_id: h.schedulerId,
      }));
    },
  );
}
