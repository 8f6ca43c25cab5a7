import type { SpanContext, TracingLog } from "../trace.js";

// Decides whether a new span is recorded, from its trace id and its parent.
export type Sampler = (traceId: string, parent: SpanContext | undefined) => boolean;

const always: Sampler = () => true;
const never: Sampler = () => false;

// The spec's TraceIdRatioBased: the decision depends only on the trace id, so
// every process of a trace decides alike.
function ratio(r: number): Sampler {
  if (r >= 1) return always;
  if (r <= 0) return never;
  const bound = Math.floor(r * 2 ** 52);
  return (traceId) => parseInt(traceId.slice(19, 32), 16) < bound;
}

const parentBased =
  (root: Sampler): Sampler =>
  (traceId, parent) =>
    parent ? parent.sampled : root(traceId, parent);

// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG; default parentbased_always_on.
export function samplerFromEnv(env: NodeJS.ProcessEnv, log?: TracingLog): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? "").trim().toLowerCase() || "parentbased_always_on";
  const argRaw = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  let arg = argRaw === undefined || argRaw === "" ? 1 : Number(argRaw);
  if (!Number.isFinite(arg) || arg < 0 || arg > 1) {
    log?.warn({ value: argRaw }, "tracing: OTEL_TRACES_SAMPLER_ARG is not a number in [0, 1]; using 1");
    arg = 1;
  }
  switch (name) {
    case "always_on":
      return always;
    case "always_off":
      return never;
    case "traceidratio":
      return ratio(arg);
    case "parentbased_always_on":
      return parentBased(always);
    case "parentbased_always_off":
      return parentBased(never);
    case "parentbased_traceidratio":
      return parentBased(ratio(arg));
    default:
      log?.warn({ sampler: name }, "tracing: unknown OTEL_TRACES_SAMPLER; using parentbased_always_on");
      return parentBased(always);
  }
}
