// What the OpenTelemetry SDK does not read from the environment itself: the
// sampler, the batch processor's limits, the OTLP/HTTP encoding and our
// resource attributes. The exporter reads its endpoint, headers, compression,
// timeout and TLS files (OTEL_EXPORTER_OTLP_*) from process.env on its own.
import { hostname } from "node:os";
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace";
import type { BatchSpanProcessorOptions, Sampler } from "@opentelemetry/sdk-trace";
import { defaultResource, detectResources, envDetector, resourceFromAttributes, type Resource } from "@opentelemetry/resources";
import type { TracingLog } from "../trace.js";
import { version } from "../version.js";

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
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(arg);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(arg) });
    default:
      log?.warn({ sampler: name }, "tracing: unknown OTEL_TRACES_SAMPLER; using parentbased_always_on");
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

const num = (v: string | undefined, dflt: number) => {
  const n = v === undefined || v.trim() === "" ? NaN : Number(v);
  return Number.isFinite(n) && n > 0 ? n : dflt;
};

// OTEL_BSP_*: the spec's names and defaults.
export function batchOptionsFromEnv(env: NodeJS.ProcessEnv): Omit<BatchSpanProcessorOptions, "exporter"> {
  return {
    scheduledDelayMillis: num(env.OTEL_BSP_SCHEDULE_DELAY, 5_000),
    exportTimeoutMillis: num(env.OTEL_BSP_EXPORT_TIMEOUT, 30_000),
    maxQueueSize: num(env.OTEL_BSP_MAX_QUEUE_SIZE, 2048),
    maxExportBatchSize: num(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512),
  };
}

// OTLP over HTTP only: protobuf (the spec's default) or JSON.
export function protocolFromEnv(env: NodeJS.ProcessEnv, log?: TracingLog): "http/protobuf" | "http/json" {
  const proto = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "").trim().toLowerCase() || "http/protobuf";
  if (proto === "http/json") return "http/json";
  if (proto !== "http/protobuf") log?.warn({ protocol: proto }, "tracing: only OTLP over HTTP is supported (http/protobuf, http/json); using http/protobuf");
  return "http/protobuf";
}

// The SDK's defaults, serviceName unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES names one, then what identifies this process.
// No process detector: it would record the command line, which can hold a
// credential (`get -H "Authorization: ..."`).
export function resourceFor(serviceName: string): Resource {
  return defaultResource()
    .merge(resourceFromAttributes({ "service.name": serviceName }))
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ "service.version": version(), "host.name": hostname(), "process.pid": process.pid }));
}
