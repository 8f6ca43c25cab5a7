import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { EMPTY_LOCALITY, prioritize, type LocalitySource } from "../extender/locality.js";
import { EXTENDER_LIMITS, filterAll, parseExtenderArgs } from "../extender/protocol.js";

// The Kubernetes scheduler extender (KubeSchedulerConfiguration `extenders:`
// with urlPrefix {manager}/extender/v1, prioritizeVerb "prioritize",
// filterVerb "filter"). Outside /api: kube-scheduler cannot send a bearer
// token (its extender client has TLS settings only), so these routes are
// public; what they reveal is a 0..10 score per node the caller names.
// Not audited (audit.ts records /api routes): one call per pod scheduled.

const HostPriority = Type.Object({ Host: Type.String(), Score: Type.Integer({ minimum: 0, maximum: 10 }) });
// The body is checked by parseExtenderArgs (Go's case-insensitive keys do not
// fit a JSON schema); Fastify only makes sure it is a JSON object.
const Body = Type.Object({}, { additionalProperties: true });

export function extenderRoutes(locality: LocalitySource = EMPTY_LOCALITY) {
  const opts = (summary: string, response: Record<number, unknown>) => ({
    bodyLimit: EXTENDER_LIMITS.maxBodyBytes,
    schema: { tags: ["extender"], summary, body: Body, response },
    config: { access: "public" as const },
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
