// The span recorder behind common/trace.ts, loaded only when tracing is on.
// Spans are plain objects; a finished sampled span goes to the exporter's
// queue and nothing else happens on the caller's path.
import { randomFillSync } from "node:crypto";
import { hostname } from "node:os";
import { DamselflyError } from "../errors.js";
import { version } from "../version.js";
import type { AttrValue, ParentLike, Span, SpanContext, SpanKindValue, SpanOptions, Tracer, TracingLog } from "../trace.js";
import { OtlpExporter, exporterOptionsFromEnv } from "./otlp-exporter.js";
import { samplerFromEnv, type Sampler } from "./sampler.js";

// Marks that tracing code is in this process (the tracing-off test checks it).
(globalThis as Record<symbol, unknown>)[Symbol.for("damselfly.tracing.loaded")] = true;

export interface FinishedSpan {
  name: string;
  kind: SpanKindValue;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttrValue>;
  // OTLP status code: 0 unset, 1 ok, 2 error.
  status: 0 | 1 | 2;
  statusMessage: string;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);
// Attribute values are cut here: a span is metadata, not a payload.
const MAX_ATTR_CHARS = 1024;

// W3C Trace Context level 1: version 00 exactly, any later version read
// leniently; all-zero ids are invalid.
export function parseTraceparent(tp: string | undefined, tracestate?: string): SpanContext | undefined {
  if (!tp) return undefined;
  const m = TRACEPARENT.exec(tp.trim().toLowerCase());
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5] !== undefined)) return undefined;
  if (m[2] === ZERO_TRACE || m[3] === ZERO_SPAN) return undefined;
  const ts = tracestate?.trim();
  return { traceId: m[2]!, spanId: m[3]!, sampled: (parseInt(m[4]!, 16) & 1) === 1, ...(ts && ts.length <= 512 ? { traceState: ts } : {}) };
}

function parentContext(p: ParentLike): SpanContext | undefined {
  if (!p) return undefined;
  if ("recording" in p) return p.context;
  if ("traceparent" in p) return parseTraceparent(p.traceparent, p.tracestate);
  return p;
}

const idBuf = Buffer.alloc(24);
function newIds(): { trace: string; span: string } {
  randomFillSync(idBuf);
  return { trace: idBuf.toString("hex", 0, 16), span: idBuf.toString("hex", 16, 24) };
}
function newSpanId(): string {
  randomFillSync(idBuf, 0, 8);
  return idBuf.toString("hex", 0, 8);
}

// Wall-clock nanoseconds with a monotonic clock's resolution.
const originNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
const nowNs = () => originNs + process.hrtime.bigint();

class RecordingSpan implements Span {
  readonly recording = true;
  private readonly attrs: Record<string, AttrValue> = {};
  private status: 0 | 1 | 2 = 0;
  private statusMessage = "";
  private readonly startNs = nowNs();
  private ended = false;

  constructor(
    private readonly owner: TracerImpl,
    private readonly name: string,
    private readonly kind: SpanKindValue,
    readonly context: SpanContext,
    private readonly parentSpanId: string,
  ) {}

  setAttribute(key: string, value: AttrValue | undefined): this {
    if (value === undefined || this.ended) return this;
    this.attrs[key] = typeof value === "string" && value.length > MAX_ATTR_CHARS ? value.slice(0, MAX_ATTR_CHARS) : value;
    return this;
  }

  setError(err: unknown): this {
    const e = DamselflyError.from(err);
    this.status = 2;
    this.statusMessage = e.message.slice(0, MAX_ATTR_CHARS);
    this.attrs["error.type"] = e.code;
    return this;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.owner.finished({
      name: this.name,
      kind: this.kind,
      traceId: this.context.traceId,
      spanId: this.context.spanId,
      parentSpanId: this.parentSpanId,
      traceState: this.context.traceState ?? "",
      startNs: this.startNs,
      endNs: nowNs(),
      attributes: this.attrs,
      status: this.status,
      statusMessage: this.statusMessage,
    });
  }
}

// A span the sampler left out: it carries the context on (so downstream
// processes make the same choice) and records nothing.
class NonRecordingSpan implements Span {
  readonly recording = false;
  constructor(readonly context: SpanContext) {}
  setAttribute(): this {
    return this;
  }
  setError(): this {
    return this;
  }
  end(): void {}
}

export class TracerImpl implements Tracer {
  readonly enabled = true;

  constructor(
    private readonly sampler: Sampler,
    private readonly exporter: OtlpExporter,
  ) {}

  startSpan(name: string, opts: SpanOptions = {}): Span {
    const parent = parentContext(opts.parent);
    let traceId: string;
    let spanId: string;
    if (parent) {
      traceId = parent.traceId;
      spanId = newSpanId();
    } else {
      const ids = newIds();
      traceId = ids.trace;
      spanId = ids.span;
    }
    const sampled = this.sampler(traceId, parent);
    const context: SpanContext = { traceId, spanId, sampled, ...(parent?.traceState ? { traceState: parent.traceState } : {}) };
    if (!sampled) return new NonRecordingSpan(context);
    const span = new RecordingSpan(this, name, opts.kind ?? 1, context, parent?.spanId ?? "");
    if (opts.attributes) for (const [k, v] of Object.entries(opts.attributes)) span.setAttribute(k, v);
    return span;
  }

  finished(s: FinishedSpan): void {
    this.exporter.add(s);
  }

  shutdown(timeoutMs: number): Promise<void> {
    return this.exporter.shutdown(timeoutMs);
  }
}

// OTEL_RESOURCE_ATTRIBUTES: key=value,key=value (values percent-encoded).
function resourceFromEnv(serviceName: string, env: NodeJS.ProcessEnv): Record<string, AttrValue> {
  const attrs: Record<string, AttrValue> = {};
  for (const pair of (env.OTEL_RESOURCE_ATTRIBUTES ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i <= 0) continue;
    try {
      attrs[decodeURIComponent(pair.slice(0, i).trim())] = decodeURIComponent(pair.slice(i + 1).trim());
    } catch {
      // A malformed pair is skipped, as the spec asks.
    }
  }
  return {
    ...attrs,
    "service.name": env.OTEL_SERVICE_NAME?.trim() || (typeof attrs["service.name"] === "string" ? attrs["service.name"] : serviceName),
    "service.version": version(),
    "host.name": hostname(),
    "process.pid": process.pid,
    "telemetry.sdk.name": "damselfly",
    "telemetry.sdk.language": "nodejs",
  };
}

export function createTracer(serviceName: string, env: NodeJS.ProcessEnv, log?: TracingLog): Tracer {
  const resource = resourceFromEnv(serviceName, env);
  const opts = exporterOptionsFromEnv(env, log);
  const exporter = new OtlpExporter({ ...opts, resource, ...(log ? { log } : {}) });
  log?.info({ endpoint: opts.url, protocol: opts.protocol, serviceName: resource["service.name"] }, "tracing: exporting spans over OTLP/HTTP");
  return new TracerImpl(samplerFromEnv(env, log), exporter);
}
