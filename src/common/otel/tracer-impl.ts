// common/trace.ts on the OpenTelemetry SDK, loaded only when tracing is on
// (trace.ts imports this file with import()). Spans are the SDK's; this file
// maps our small facade onto them: parents passed explicitly (no context
// manager, no global provider), our span kinds, setError's shape.
import { diag, DiagLogLevel, ROOT_CONTEXT, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Context, Span as ApiSpan, SpanContext as ApiSpanContext, Tracer as ApiTracer } from "@opentelemetry/api";
import { parseTraceParent, setGlobalErrorHandler, TraceState } from "@opentelemetry/core";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { DamselflyError } from "../errors.js";
import { version } from "../version.js";
import type { AttrValue, ParentLike, Span, SpanContext, SpanOptions, Tracer, TracingLog } from "../trace.js";
import { batchOptionsFromEnv, protocolFromEnv, resourceFor, samplerFromEnv } from "./sdk-config.js";

// Marks that tracing code is in this process (the tracing-off tests check it).
(globalThis as Record<symbol, unknown>)[Symbol.for("damselfly.tracing.loaded")] = true;

// Attribute values are cut here: a span is metadata, not a payload.
const MAX_ATTR_CHARS = 1024;
// A failing receiver is reported at most this often.
const WARN_EVERY_MS = 60_000;
const SAMPLED = 1;

// W3C Trace Context level 1 (the SDK's parser: version ff and all-zero ids
// are invalid, later versions read leniently); a tracestate over 512
// characters is dropped.
export function parseTraceparent(tp: string | undefined, tracestate?: string): SpanContext | undefined {
  const c = tp ? parseTraceParent(tp.trim().toLowerCase()) : null;
  if (!c) return undefined;
  const ts = tracestate?.trim();
  return { traceId: c.traceId, spanId: c.spanId, sampled: (c.traceFlags & SAMPLED) === SAMPLED, ...(ts && ts.length <= 512 ? { traceState: ts } : {}) };
}

function toApi(c: SpanContext, isRemote: boolean): ApiSpanContext {
  const traceState = c.traceState ? { traceState: new TraceState(c.traceState) } : {};
  return { traceId: c.traceId, spanId: c.spanId, traceFlags: c.sampled ? SAMPLED : 0, isRemote, ...traceState };
}

function fromApi(c: ApiSpanContext): SpanContext {
  const ts = c.traceState?.serialize();
  return { traceId: c.traceId, spanId: c.spanId, sampled: (c.traceFlags & SAMPLED) === SAMPLED, ...(ts ? { traceState: ts } : {}) };
}

class SdkSpan implements Span {
  private ctx: SpanContext | undefined;
  private ended = false;

  constructor(readonly inner: ApiSpan) {}

  get recording(): boolean {
    return this.inner.isRecording();
  }

  get context(): SpanContext {
    return (this.ctx ??= fromApi(this.inner.spanContext()));
  }

  setAttribute(key: string, value: AttrValue | undefined): this {
    if (value !== undefined && !this.ended) this.inner.setAttribute(key, value);
    return this;
  }

  // The error's code and message, never its cause chain (request details).
  setError(err: unknown): this {
    if (this.ended || !this.inner.isRecording()) return this;
    const e = DamselflyError.from(err);
    this.inner.setStatus({ code: SpanStatusCode.ERROR, message: e.message.slice(0, MAX_ATTR_CHARS) });
    this.inner.setAttribute("error.type", e.code);
    return this;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.inner.end();
  }
}

function parentContext(p: ParentLike): Context {
  if (!p) return ROOT_CONTEXT;
  if (p instanceof SdkSpan) return trace.setSpan(ROOT_CONTEXT, p.inner);
  const c = "recording" in p ? p.context : "traceparent" in p ? parseTraceparent(p.traceparent, p.tracestate) : p;
  return c ? trace.setSpanContext(ROOT_CONTEXT, toApi(c, "traceparent" in p)) : ROOT_CONTEXT;
}

function definedAttrs(a: Record<string, AttrValue | undefined> | undefined): Record<string, AttrValue> | undefined {
  if (!a) return undefined;
  const out: Record<string, AttrValue> = {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined) out[k] = v;
  return out;
}

class SdkTracer implements Tracer {
  readonly enabled = true;

  constructor(
    private readonly provider: TracerProvider,
    private readonly tracer: ApiTracer,
    private readonly log?: TracingLog,
  ) {}

  startSpan(name: string, opts: SpanOptions = {}): Span {
    const attributes = definedAttrs(opts.attributes);
    // Our kinds are OTLP's numbers (1 internal, 2 server, 3 client); the API's start at 0.
    const span = this.tracer.startSpan(name, { kind: (opts.kind ?? 1) - 1, ...(attributes ? { attributes } : {}) }, parentContext(opts.parent));
    return new SdkSpan(span);
  }

  // Exports what is queued; gives up (dropping the rest) at the deadline.
  async shutdown(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    });
    const done = this.provider.shutdown().catch((err: unknown) => this.log?.warn({ err: String(err) }, "tracing: spans not sent at shutdown"));
    await Promise.race([done, deadline]);
    clearTimeout(timer);
  }
}

// The SDK reports through the API's diag logger and its global error handler:
// both go to our log, at most once a minute, so a receiver that is down does
// not flood it.
function routeSdkLogs(log: TracingLog | undefined): void {
  let last = -Infinity;
  const warn = (msg: string, ...args: unknown[]) => {
    const now = Date.now();
    if (!log || now - last < WARN_EVERY_MS) return;
    last = now;
    log.warn({ detail: args.map(String).join(" ") || undefined }, `tracing: ${msg}`);
  };
  const ignore = () => undefined;
  diag.setLogger({ error: warn, warn, info: ignore, debug: ignore, verbose: ignore }, { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true });
  setGlobalErrorHandler((err) => warn("cannot send spans to the OTLP receiver", err instanceof Error ? err.message : err));
}

// A tracer configured by the standard OTEL_* variables of process.env (the
// SDK's exporter reads its own from there).
export async function createTracer(serviceName: string, log?: TracingLog): Promise<Tracer> {
  const env = process.env;
  routeSdkLogs(log);
  const protocol = protocolFromEnv(env, log);
  const { OTLPTraceExporter } =
    protocol === "http/json" ? await import("@opentelemetry/exporter-trace-otlp-http") : await import("@opentelemetry/exporter-trace-otlp-proto");
  const resource = resourceFor(serviceName);
  const provider = new TracerProvider({
    resource,
    sampler: samplerFromEnv(env, log),
    spanLimits: { attributeValueLengthLimit: MAX_ATTR_CHARS },
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), ...batchOptionsFromEnv(env) })],
  });
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || "http://localhost:4318";
  log?.info({ endpoint, protocol, serviceName: resource.attributes["service.name"] }, "tracing: exporting spans over OTLP/HTTP");
  return new SdkTracer(provider, provider.getTracer("damselfly", version()), log);
}
