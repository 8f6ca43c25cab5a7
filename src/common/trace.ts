// The tracing facade every component calls. It is all that loads when tracing
// is off (the default): startSpan() then hands back one shared no-op span, so
// instrumented code costs a function call and nothing is allocated, sent or
// imported. initTracing() loads the OpenTelemetry SDK (./otel/) only when the
// standard OTEL_* variables ask for traces.

// OTLP span kinds.
export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
export type SpanKindValue = (typeof SpanKind)[keyof typeof SpanKind];

export type AttrValue = string | number | boolean;

export interface SpanContext {
  // 32 / 16 lowercase hex digits.
  traceId: string;
  spanId: string;
  sampled: boolean;
  traceState?: string;
}

export interface Span {
  // False for the no-op span and for spans the sampler left out: callers skip
  // work that only feeds attributes.
  readonly recording: boolean;
  // Undefined only for the no-op span (tracing off).
  readonly context: SpanContext | undefined;
  setAttribute(key: string, value: AttrValue | undefined): this;
  // Marks the span failed with the error's code and message (never its
  // cause chain: that may hold request details).
  setError(err: unknown): this;
  end(): void;
}

// Where a new span hangs: a span, a context, or an incoming `traceparent`
// header (with its `tracestate`).
export type ParentLike = Span | SpanContext | { traceparent: string | undefined; tracestate?: string | undefined } | undefined;

export interface SpanOptions {
  kind?: SpanKindValue;
  parent?: ParentLike;
  attributes?: Record<string, AttrValue | undefined>;
}

export interface Tracer {
  readonly enabled: boolean;
  startSpan(name: string, opts?: SpanOptions): Span;
  // Sends what is buffered; resolves within timeoutMs whatever the receiver does.
  shutdown(timeoutMs: number): Promise<void>;
}

const NOOP_SPAN: Span = {
  recording: false,
  context: undefined,
  setAttribute() {
    return this;
  },
  setError() {
    return this;
  },
  end() {},
};

const NOOP_TRACER: Tracer = {
  enabled: false,
  startSpan: () => NOOP_SPAN,
  shutdown: () => Promise.resolve(),
};

let current: Tracer = NOOP_TRACER;

export function tracer(): Tracer {
  return current;
}

// Shorthand for tracer().startSpan().
export function startSpan(name: string, opts?: SpanOptions): Span {
  return current.startSpan(name, opts);
}

// The W3C `traceparent` value that makes a remote span a child of `span`
// (undefined when tracing is off).
export function traceparentOf(span: Span | SpanContext | undefined): string | undefined {
  const c = span && "recording" in span ? span.context : span;
  if (!c) return undefined;
  return `00-${c.traceId}-${c.spanId}-${c.sampled ? "01" : "00"}`;
}

// Headers that carry a span's context to another process: {} when off.
export function traceHeaders(span: Span | SpanContext | undefined): Record<string, string> {
  const tp = traceparentOf(span);
  if (!tp) return {};
  const c = span && "recording" in span ? span.context : span;
  return c?.traceState ? { traceparent: tp, tracestate: c.traceState } : { traceparent: tp };
}

// The trace context a caller sent: Fetch Headers (Connect handlers) or
// node:http / node:http2 request headers (a repeated one counts by its first
// value).
export function traceOfHeaders(h: Headers | Record<string, string | string[] | undefined>): {
  traceparent: string | undefined;
  tracestate: string | undefined;
} {
  if (h instanceof Headers) return { traceparent: h.get("traceparent") ?? undefined, tracestate: h.get("tracestate") ?? undefined };
  const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  return { traceparent: one(h["traceparent"]), tracestate: one(h["tracestate"]) };
}

const truthy = (v: string | undefined) => v !== undefined && /^(true|1|yes|on)$/i.test(v.trim());

// True when the environment asks for traces: an OTLP endpoint is set or
// OTEL_TRACES_EXPORTER names otlp, and the SDK is not disabled.
export function tracingWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  if (truthy(env.OTEL_SDK_DISABLED)) return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (exporter) return exporter.split(",").some((e) => e.trim() === "otlp");
  return !!(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim());
}

export interface TracingLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

// Turns tracing on for this process when env asks for it; the SDK then reads
// its settings from process.env. serviceName is the default of
// OTEL_SERVICE_NAME (damselfly-daemon, ...).
export async function initTracing(serviceName: string, log?: TracingLog, env: NodeJS.ProcessEnv = process.env): Promise<Tracer> {
  if (current.enabled || !tracingWanted(env)) return current;
  const { createTracer } = await import("./otel/tracer-impl.js");
  current = await createTracer(serviceName, log);
  return current;
}

// Flushes and stops the exporter (process exit). A no-op when off.
export async function shutdownTracing(timeoutMs = 3_000): Promise<void> {
  const t = current;
  if (!t.enabled) return;
  await t.shutdown(timeoutMs);
}

// A URL as a span attribute: scheme, host and path only. Query strings
// (signed URLs) and user info are credentials.
export function spanUrl(raw: string): string {
  try {
    const u = new URL(raw);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "";
  }
}
