import { Type, type Static } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isHeaderName, isHeaderValue } from "../../common/http-headers.js";
import { parseSourceUrl } from "../../common/task-id.js";
import type { Job } from "../db/tables.js";
import { badRequest, notFound } from "../http/errors.js";
import { parseManifestUrl, parsePlatform } from "../jobs/image-resolver.js";
import { MAX_JOB_TIMEOUT_NS, type JobArgs } from "../jobs/job-types.js";
import { checkObjectArgs, isObjectUrl } from "../jobs/object-resolver.js";
import type { RouteContext } from "./context.js";
import { errorResponses, IdParams } from "./schemas.js";

// Harbor's Dragonfly preheat provider speaks this shape (POST, then GET until
// SUCCESS or FAILURE); extra fields Harbor or Dragonfly clients add are
// accepted and ignored.
const Args = Type.Object({
  // preheat: what to preheat (required).
  type: Type.Optional(Type.Union([Type.Literal("image"), Type.Literal("file")])),
  // preheat: required; get_task/delete_task: the URL whose task it is (or task_id).
  url: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  task_id: Type.Optional(Type.String({ pattern: "^[0-9a-f]{64}$" })),
  tag: Type.Optional(Type.String({ maxLength: 256 })),
  application: Type.Optional(Type.String({ maxLength: 256 })),
  filtered_query_params: Type.Optional(Type.String({ maxLength: 1024 })),
  // Names and values are checked in the handler (isHeaderName/Value).
  headers: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 8192 }), { maxProperties: 64 })),
  scope: Type.Optional(Type.Union([Type.Literal("single_seed_peer"), Type.Literal("all_seed_peers"), Type.Literal("all_peers")])),
  platform: Type.Optional(Type.String({ maxLength: 64 })),
  concurrent_count: Type.Optional(Type.Integer({ minimum: 0, maximum: 64 })),
  // Nanoseconds (Harbor's unit), at most 24 h; 0: the manager's default.
  timeout: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_JOB_TIMEOUT_NS })),
  // s3:// prefix or hf:// repository/folder: every file under it, filtered
  // by globs as `get -r --include/--exclude` does.
  recursive: Type.Optional(Type.Boolean()),
  include: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 64 })),
  exclude: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 64 })),
  hf_revision: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: "^\\S+$" })),
  // Held in memory for the job's life; stored and shown as "[redacted]".
  hf_token: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, pattern: "^[\\x21-\\x7e]+$" })),
});
const CreateJobBody = Type.Object({
  type: Type.Union([Type.Literal("preheat"), Type.Literal("get_task"), Type.Literal("delete_task")]),
  args: Args,
  scheduler_cluster_ids: Type.Optional(Type.Array(Type.Integer({ minimum: 1 }), { maxItems: 256 })),
});
const JobBody = Type.Object({
  id: Type.Integer(),
  type: Type.String(),
  state: Type.String(),
  args: Type.Record(Type.String(), Type.Unknown()),
  scheduler_cluster_ids: Type.Array(Type.Integer()),
  result: Type.Record(Type.String(), Type.Unknown()),
  error: Type.String(),
  user_id: Type.Integer(),
  created_at: Type.String(),
  updated_at: Type.String(),
});
const ListQuery = Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) });

// A row a bug or a hand wrote may not parse: the job is still shown.
function parsed<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

export function jobView(j: Job): Static<typeof JobBody> {
  return {
    id: j.id,
    type: j.type,
    state: j.state,
    args: parsed<Record<string, unknown>>(j.args, {}),
    scheduler_cluster_ids: parsed<number[]>(j.scheduler_cluster_ids, []),
    result: parsed<Record<string, unknown>>(j.result, {}),
    error: j.error,
    user_id: j.user_id,
    created_at: j.created_at,
    updated_at: j.updated_at,
  };
}

export function jobRoutes(ctx: RouteContext) {
  const { database, jobs } = ctx;
  const { db } = database;

  return async (app: FastifyInstance) => {
    for (const prefix of ["/api/v1", "/oapi/v1"]) {
      const tags = [prefix === "/oapi/v1" ? "open API (personal access tokens)" : "jobs"];
      app.post<{ Body: Static<typeof CreateJobBody> }>(
        `${prefix}/jobs`,
        {
          schema: {
            tags,
            summary: "create a job: preheat (Harbor's Dragonfly provider shape), get_task (which hosts hold a task) or delete_task (remove it from every host)",
            body: CreateJobBody,
            response: { 200: JobBody, ...errorResponses },
          },
          config: { access: "job:write" },
        },
        async (req) => {
          const a = req.body.args;
          if (req.body.type === "preheat") {
            if (a.type === undefined || a.url === undefined) throw badRequest("a preheat job needs args.type (image or file) and args.url");
            checkObjectArgs(a as JobArgs);
            if (a.type === "file" && !isObjectUrl(a.url)) parseSourceUrl(a.url);
            else if (a.type === "image") parseManifestUrl(a.url);
          } else if (a.task_id === undefined) {
            if (a.url === undefined) throw badRequest(`a ${req.body.type} job needs args.task_id or args.url`);
            parseSourceUrl(a.url);
          }
          if (a.platform) parsePlatform(a.platform);
          for (const [k, v] of Object.entries(a.headers ?? {})) {
            if (!isHeaderName(k) || !isHeaderValue(v)) throw badRequest(`invalid header ${JSON.stringify(k)}`);
          }
          const ids = [...new Set(req.body.scheduler_cluster_ids ?? [])];
          if (ids.length > 0) {
            const found = await db.selectFrom("scheduler_clusters").select("id").where("id", "in", ids).execute();
            const missing = ids.filter((id) => !found.some((f) => f.id === id));
            if (missing.length > 0) throw badRequest(`scheduler cluster(s) ${missing.join(", ")} do not exist`);
          }
          const job = await jobs.create(req.principal!.userId, req.body.type, a as JobArgs, ids);
          return jobView(job);
        },
      );

      app.get<{ Params: Static<typeof IdParams> }>(
        `${prefix}/jobs/:id`,
        {
          schema: { tags, summary: "one job: poll until state is SUCCESS or FAILURE", params: IdParams, response: { 200: JobBody, ...errorResponses } },
          config: { access: "job:read" },
        },
        async (req) => {
          const j = await db.selectFrom("jobs").selectAll().where("id", "=", req.params.id).executeTakeFirst();
          if (!j) throw notFound(`job ${req.params.id}`);
          return jobView(j);
        },
      );

      app.get<{ Querystring: Static<typeof ListQuery> }>(
        `${prefix}/jobs`,
        {
          schema: { tags, summary: "recent jobs, newest first", querystring: ListQuery, response: { 200: Type.Array(JobBody) } },
          config: { access: "job:read" },
        },
        async (req) => (await db.selectFrom("jobs").selectAll().orderBy("id", "desc").limit(req.query.limit).execute()).map(jobView),
      );
    }
  };
}
