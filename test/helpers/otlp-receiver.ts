// An OTLP/HTTP trace receiver on 127.0.0.1 for tests: POST /v1/traces in
// protobuf (decoded here, only the fields a test looks at) or JSON. The
// decoder is its own, from the OTLP .proto field numbers: it does not share
// code with the SDK that encodes what it checks.
import http from "node:http";
import { once } from "node:events";
import { gunzipSync } from "node:zlib";

export type AttrValue = string | number | boolean;

export interface ReceivedSpan {
  service: string;
  resource: Record<string, AttrValue>;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttrValue>;
  statusCode: number;
}

export interface OtlpReceiver {
  // http://127.0.0.1:PORT (OTEL_EXPORTER_OTLP_ENDPOINT)
  endpoint: string;
  readonly spans: ReceivedSpan[];
  // Content types of the requests received, in order.
  readonly contentTypes: string[];
  readonly requests: number;
  // Resolves with the spans once pred holds (polled), rejects after timeoutMs.
  waitFor(pred: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

// ---- protobuf reading ----

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let shift = 0n;
    let v = 0n;
    for (;;) {
      const b = this.buf[this.pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  }
  // Yields [field, wire, value]: value is a bigint (varint/fixed64), or a Buffer (length-delimited).
  *fields(): Generator<[number, number, bigint | Buffer]> {
    while (!this.done) {
      const tag = Number(this.varint());
      const field = tag >> 3;
      const wire = tag & 7;
      if (wire === 0) yield [field, wire, this.varint()];
      else if (wire === 1) {
        const v = this.buf.readBigUInt64LE(this.pos);
        this.pos += 8;
        yield [field, wire, v];
      } else if (wire === 2) {
        const len = Number(this.varint());
        const b = this.buf.subarray(this.pos, this.pos + len);
        this.pos += len;
        yield [field, wire, b];
      } else if (wire === 5) {
        const v = BigInt(this.buf.readUInt32LE(this.pos));
        this.pos += 4;
        yield [field, wire, v];
      } else throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

function anyValue(b: Buffer, wireDoubles = true): AttrValue {
  for (const [f, , v] of new Reader(b).fields()) {
    if (f === 1) return (v as Buffer).toString("utf8");
    if (f === 2) return (v as bigint) !== 0n;
    if (f === 3) return Number(BigInt.asIntN(64, v as bigint));
    if (f === 4 && wireDoubles) {
      const d = Buffer.alloc(8);
      d.writeBigUInt64LE(v as bigint);
      return d.readDoubleLE(0);
    }
  }
  return "";
}

function keyValue(b: Buffer): [string, AttrValue] {
  let key = "";
  let value: AttrValue = "";
  for (const [f, , v] of new Reader(b).fields()) {
    if (f === 1) key = (v as Buffer).toString("utf8");
    if (f === 2) value = anyValue(v as Buffer);
  }
  return [key, value];
}

export function decodeProto(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const [f, , rs] of new Reader(body).fields()) {
    if (f !== 1) continue;
    const resource: Record<string, AttrValue> = {};
    const scopeSpans: Buffer[] = [];
    for (const [g, , v] of new Reader(rs as Buffer).fields()) {
      if (g === 1) for (const [h, , kv] of new Reader(v as Buffer).fields()) if (h === 1) Object.assign(resource, Object.fromEntries([keyValue(kv as Buffer)]));
      if (g === 2) scopeSpans.push(v as Buffer);
    }
    for (const ss of scopeSpans) {
      for (const [g, , sp] of new Reader(ss).fields()) {
        if (g !== 2) continue;
        const s: ReceivedSpan = {
          service: String(resource["service.name"] ?? ""),
          resource,
          traceId: "",
          spanId: "",
          parentSpanId: "",
          name: "",
          kind: 0,
          startNs: 0n,
          endNs: 0n,
          attributes: {},
          statusCode: 0,
        };
        for (const [h, , v] of new Reader(sp as Buffer).fields()) {
          if (h === 1) s.traceId = (v as Buffer).toString("hex");
          else if (h === 2) s.spanId = (v as Buffer).toString("hex");
          else if (h === 4) s.parentSpanId = (v as Buffer).toString("hex");
          else if (h === 5) s.name = (v as Buffer).toString("utf8");
          else if (h === 6) s.kind = Number(v);
          else if (h === 7) s.startNs = v as bigint;
          else if (h === 8) s.endNs = v as bigint;
          else if (h === 9) {
            const [k, val] = keyValue(v as Buffer);
            s.attributes[k] = val;
          } else if (h === 15) for (const [i, , c] of new Reader(v as Buffer).fields()) if (i === 3) s.statusCode = Number(c);
        }
        out.push(s);
      }
    }
  }
  return out;
}

// ---- JSON ----

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function jsonValue(v: Json): AttrValue {
  if ("stringValue" in v) return v.stringValue as string;
  if ("boolValue" in v) return v.boolValue as boolean;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return Number(v.doubleValue);
  return "";
}

const jsonAttrs = (list: Json[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key as string, jsonValue(kv.value as Json)]));

export function decodeJson(body: Buffer): ReceivedSpan[] {
  const req = JSON.parse(body.toString("utf8")) as Json;
  const out: ReceivedSpan[] = [];
  for (const rs of (req.resourceSpans ?? []) as Json[]) {
    const resource = jsonAttrs(rs.resource?.attributes);
    for (const ss of (rs.scopeSpans ?? []) as Json[]) {
      for (const s of (ss.spans ?? []) as Json[]) {
        out.push({
          service: String(resource["service.name"] ?? ""),
          resource,
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? "",
          name: s.name,
          kind: s.kind,
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          attributes: jsonAttrs(s.attributes),
          statusCode: s.status?.code ?? 0,
        });
      }
    }
  }
  return out;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  let requests = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests++;
      if (req.method !== "POST" || req.url !== "/v1/traces") {
        res.writeHead(404).end();
        return;
      }
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      const type = String(req.headers["content-type"] ?? "");
      contentTypes.push(type);
      try {
        spans.push(...(type.startsWith("application/json") ? decodeJson(body) : decodeProto(body)));
      } catch (err) {
        res.writeHead(400, { "content-type": "text/plain" }).end(String(err));
        return;
      }
      res
        .writeHead(200, { "content-type": type.startsWith("application/json") ? "application/json" : "application/x-protobuf" })
        .end(type.startsWith("application/json") ? "{}" : "");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    get requests() {
      return requests;
    },
    async waitFor(pred, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(spans)) {
        if (Date.now() > deadline)
          throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms; spans: ${spans.map((s) => `${s.service}/${s.name}`).join(", ")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return spans;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
