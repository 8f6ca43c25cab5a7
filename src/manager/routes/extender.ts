import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { DamselflyError } from "../../common/errors.js";
import { identityOfSocket, type Role } from "../../common/tls/roles.js";
import { connectionOf } from "../../protocol/caller.js";
import { EMPTY_LOCALITY, prioritize, type LocalitySource } from "../extender/locality.js";
import { EXTENDER_LIMITS, filterAll, parseExtenderArgs } from "../extender/protocol.js";

// The Kubernetes scheduler extender (KubeSchedulerConfiguration `extenders:`
// with urlPrefix {manager}/extender/v1, prioritizeVerb "prioritize",
// filterVerb "filter"). Outside /api: kube-scheduler cannot send a bearer
// token (its extender client has TLS settings only), so these routes take no
// user authentication; with TLS they take a client certificate instead.
// What they reveal is a 0..10 score per node the caller names.
// Not audited (audit.ts records /api routes): one call per pod scheduled.

const HostPriority = Type.Object({ Host: Type.String(), Score: Type.Integer({ minimum: 0, maximum: 10 }) });
// The body is checked by parseExtenderArgs (Go's case-insensitive keys do not
// fit a JSON schema); Fastify only makes sure it is a JSON object.
const Body = Type.Object({}, { additionalProperties: true });

// With TLS on, only a client certificate of the cluster CA with one of
// these roles: kube-scheduler's extender `tlsConfig` (certFile/keyFile)
// shows one (damselfly certs issue --role client, or cert-manager).
export const EXTENDER_CLIENT_ROLES: readonly Role[] = ["client"];

export interface ExtenderRouteOptions {
  // The manager serves HTTPS: require a client certificate (else anyone who
  // reaches the port could make the manager resolve images and ask the
  // schedulers). Without TLS the manager listens on loopback only (or
  // --insecure) and the routes stay open, bounded.
  requireClientCert?: boolean;
}

// Checked on the connection, before the body is read (onRequest).
function checkClientCert(req: FastifyRequest): void {
  const id = identityOfSocket(connectionOf(req.raw));
  if (!id)
    throw new DamselflyError("DF_ERR_UNAUTHENTICATED", "the extender routes need a client certificate of the cluster CA (kube-scheduler's extender tlsConfig)");
  if (!EXTENDER_CLIENT_ROLES.includes(id.role)) {
    throw new DamselflyError("DF_ERR_PERMISSION_DENIED", `the extender routes need a ${EXTENDER_CLIENT_ROLES.join(" or ")} certificate, not a ${id.role} one`);
  }
}

export function extenderRoutes(locality: LocalitySource = EMPTY_LOCALITY, o: ExtenderRouteOptions = {}) {
  const opts = (summary: string, response: Record<number, unknown>) => ({
    bodyLimit: EXTENDER_LIMITS.maxBodyBytes,
    schema: { tags: ["extender"], summary, body: Body, response },
    config: { access: "public" as const },
    ...(o.requireClientCert ? { onRequest: async (req: FastifyRequest) => checkClientCert(req) } : {}),
  });
  return async (app: FastifyInstance) => {
    app.post(
      "/extender/v1/prioritize",
      opts("ExtenderArgs -> HostPriorityList: each node scored 0..10 by the share of the pod's layer bytes it holds", {
        200: Type.Array(HostPriority),
      }),
      async (req) => {
        const args = parseExtenderArgs(req.body);
        locality.wanted(args.images);
        const { images, index } = locality.current();
        return prioritize(args, images, index);
      },
    );
    app.post("/extender/v1/filter", opts("ExtenderArgs -> ExtenderFilterResult: every node kept (locality is a preference)", {}), async (req) => {
      const args = parseExtenderArgs(req.body);
      // Filter comes before prioritize: a head start for resolving new images.
      locality.wanted(args.images);
      return filterAll(args);
    });
  };
}
