// ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1) in the
// two OTLP/HTTP encodings. Only the fields our spans use are written; the
// protobuf writer is a few lines, where a protobuf runtime and the OTLP
// schema would be a dependency and start-up time for every process.
import type { AttrValue } from "../trace.js";
import type { FinishedSpan } from "./tracer-impl.js";

export interface Scope {
  name: string;
  version: string;
}

// ---- JSON (OTLP/HTTP JSON: ids in hex, 64-bit integers as strings) ----

function anyValueJson(v: AttrValue): Record<string, unknown> {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

const attrsJson = (a: Record<string, AttrValue>) => Object.entries(a).map(([key, v]) => ({ key, value: anyValueJson(v) }));

export function encodeTraceRequestJson(resource: Record<string, AttrValue>, scope: Scope, spans: readonly FinishedSpan[]): unknown {
  return {
    resourceSpans: [
      {
        resource: { attributes: attrsJson(resource) },
        scopeSpans: [
          {
            scope,
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              ...(s.traceState ? { traceState: s.traceState } : {}),
              name: s.name,
              kind: s.kind,
              startTimeUnixNano: String(s.startNs),
              endTimeUnixNano: String(s.endNs),
              attributes: attrsJson(s.attributes),
              status: s.status === 0 ? {} : { code: s.status, ...(s.statusMessage ? { message: s.statusMessage } : {}) },
            })),
          },
        ],
      },
    ],
  };
}

// ---- protobuf ----

class Writer {
  private readonly parts: Buffer[] = [];
  private len = 0;

  private push(b: Buffer): void {
    this.parts.push(b);
    this.len += b.length;
  }

  private varint(v: bigint): void {
    const bytes: number[] = [];
    let x = BigInt.asUintN(64, v);
    while (x > 0x7fn) {
      bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    bytes.push(Number(x));
    this.push(Buffer.from(bytes));
  }

  private tag(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }

  uint(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.varint(BigInt(v));
    return this;
  }

  fixed64(field: number, v: bigint): this {
    this.tag(field, 1);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.push(b);
    return this;
  }

  double(field: number, v: number): this {
    this.tag(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Buffer): this {
    this.tag(field, 2);
    this.varint(BigInt(b.length));
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return s === "" ? this : this.bytes(field, Buffer.from(s, "utf8"));
  }

  message(field: number, w: Writer): this {
    return this.bytes(field, w.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.len);
  }
}

function keyValue(key: string, v: AttrValue): Writer {
  const any = new Writer();
  if (typeof v === "string") any.bytes(1, Buffer.from(v, "utf8"));
  else if (typeof v === "boolean") any.uint(2, v ? 1 : 0);
  else if (Number.isInteger(v)) any.uint(3, BigInt(v));
  else any.double(4, v);
  return new Writer().string(1, key).message(2, any);
}

function spanProto(s: FinishedSpan): Writer {
  const w = new Writer()
    .bytes(1, Buffer.from(s.traceId, "hex"))
    .bytes(2, Buffer.from(s.spanId, "hex"))
    .string(3, s.traceState);
  if (s.parentSpanId) w.bytes(4, Buffer.from(s.parentSpanId, "hex"));
  w.string(5, s.name).uint(6, s.kind).fixed64(7, s.startNs).fixed64(8, s.endNs);
  for (const [k, v] of Object.entries(s.attributes)) w.message(9, keyValue(k, v));
  if (s.status !== 0) w.message(15, new Writer().string(2, s.statusMessage).uint(3, s.status));
  return w;
}

export function encodeTraceRequestProto(resource: Record<string, AttrValue>, scope: Scope, spans: readonly FinishedSpan[]): Buffer {
  const res = new Writer();
  for (const [k, v] of Object.entries(resource)) res.message(1, keyValue(k, v));
  const scopeSpans = new Writer().message(1, new Writer().string(1, scope.name).string(2, scope.version));
  for (const s of spans) scopeSpans.message(2, spanProto(s));
  const resourceSpans = new Writer().message(1, res).message(2, scopeSpans);
  return new Writer().message(1, resourceSpans).finish();
}
