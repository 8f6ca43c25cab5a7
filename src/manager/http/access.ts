import type { FastifyInstance } from "fastify";
import { DamselflyError } from "../../common/errors.js";
import { authenticate, authorize, type Principal } from "../auth/authenticate.js";
import { PERMISSION_RE, type Action, type Resource } from "../auth/permissions.js";
import type { Database } from "../db/database.js";

// Who may call a route, declared by the route itself (`config: { access }`)
// and checked here, once, before the body is read:
//   "public"     anyone (sign-in, the OpenAPI document)
//   "signed-in"  any valid session or personal access token
//   "session"    a signed-in session only: never a personal access token
//                (tokens are managed from a session, so a leaked token can
//                neither list, revoke nor mint others)
//   "RES:ACT"    the role's permission, and for a token, RES among its scopes
// An /api or /oapi route that declares none fails at startup, so a new route
// cannot forget; the route table lists what each declared.
export type Access = "public" | "signed-in" | "session" | `${Resource}:${Action}`;

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyInstance {
    routeAccess: RouteAccess[];
  }
}

export interface RouteAccess {
  method: string;
  url: string;
  access: Access | undefined;
}

const isApi = (url: string) => url.startsWith("/api/") || url.startsWith("/oapi/");

export function installAccess(app: FastifyInstance, database: Database): void {
  const table: RouteAccess[] = [];
  app.decorate("routeAccess", table);
  app.addHook("onRoute", (route) => {
    const access = route.config?.access;
    for (const method of [route.method].flat()) table.push({ method, url: route.url, access });
    if (isApi(route.url) && access === undefined) throw new Error(`route ${String(route.method)} ${route.url} declares no config.access`);
    if (access !== undefined && !isAccess(access)) throw new Error(`route ${route.url}: unknown access ${JSON.stringify(access)}`);
  });
  app.addHook("onRequest", async (req) => {
    const access = req.routeOptions.config?.access;
    if (access === undefined || access === "public") return;
    req.principal = await authenticate(database, req);
    check(req.principal, access);
  });
}

function check(p: Principal, access: Exclude<Access, "public">): void {
  if (access === "signed-in") return;
  if (access === "session") {
    if (p.scopes) throw new DamselflyError("DF_ERR_PERMISSION_DENIED", "only a signed-in session may do this, not a personal access token");
    return;
  }
  const [resource, action] = access.split(":") as [Resource, Action];
  authorize(p, resource, action);
}

function isAccess(a: string): a is Access {
  return a === "public" || a === "signed-in" || a === "session" || PERMISSION_RE.test(a);
}
