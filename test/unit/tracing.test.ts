// The tracing facade, the W3C trace context, samplers, both OTLP encodings and
// the exporter's limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { initTracing, spanUrl, startSpan, traceHeaders, tracer, tracingWanted } from "../../src/common/trace.js";
// The recorder is imported only after the first test (it marks itself loaded).
import type { FinishedSpan } from "../../src/common/otel/tracer-impl.js";
const impl = () => import("../../src/common/otel/tracer-impl.js");
import { encodeTraceRequestJson, encodeTraceRequestProto } from "../../src/common/otel/otlp-encode.js";
import { OtlpExporter } from "../../src/common/otel/otlp-exporter.js";
import { samplerFromEnv } from "../../src/common/otel/sampler.js";
import { decodeJson, decodeProto, startOtlpReceiver } from "../helpers/otlp-receiver.js";
import { closedPort } from "../helpers/procs.js";

const loaded = () => (globalThis as Record<symbol, unknown>)[Symbol.for("damselfly.tracing.loaded")] === true;

test("off by default: a no-op span, no context sent, the recorder never loaded", async () => {
  // First in this file: nothing has imported the recorder yet.
  const t = await initTracing("x", undefined, {});
  assert.equal(t.enabled, false);
  assert.equal(loaded(), false);
  const s = startSpan("a", { attributes: { k: "v" } });
  assert.equal(s.recording, false);
  assert.equal(s, startSpan("b"), "one shared no-op span");
  assert.deepEqual(traceHeaders(s), {});
  assert.equal(tracer().enabled, false);
});

test("which environments turn tracing on", () => {
  assert.equal(tracingWanted({}), false);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }), true);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" }), true);
  assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: "otlp" }), true);
  assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }), false);
  assert.equal(tracingWanted({ OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }), false);
  assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: "console" }), false);
});

test("traceparent: valid, invalid, all-zero, future versions", async () => {
  const { parseTraceparent } = await impl();
  const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  assert.deepEqual(parseTraceparent(tp, "k=v"), { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", sampled: true, traceState: "k=v" });
  assert.equal(parseTraceparent(tp.replace(/-01$/, "-00"))?.sampled, false);
  assert.equal(parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), undefined);
  assert.equal(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), undefined);
  assert.equal(parseTraceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), undefined);
  assert.equal(parseTraceparent(`${tp}-extra`), undefined, "version 00 has exactly four fields");
  assert.ok(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"), "later versions are read leniently");
  assert.equal(parseTraceparent("garbage"), undefined);
});

test("samplers: parent-based follows the caller, ratio decides by trace id", () => {
  const parent = { traceId: "a".repeat(32), spanId: "b".repeat(16), sampled: false };
  assert.equal(samplerFromEnv({})("c".repeat(32), parent), false);
  assert.equal(samplerFromEnv({})("c".repeat(32), undefined), true);
  assert.equal(samplerFromEnv({ OTEL_TRACES_SAMPLER: "always_on" })("c".repeat(32), parent), true);
  assert.equal(samplerFromEnv({ OTEL_TRACES_SAMPLER: "always_off" })("c".repeat(32), undefined), false);
  const half = samplerFromEnv({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.5" });
  assert.equal(half("0".repeat(32), undefined), true);
  assert.equal(half("f".repeat(32), undefined), false);
  let n = 0;
  for (let i = 0; i < 2000; i++) if (half(randomBytes(16).toString("hex"), undefined)) n++;
  assert.ok(n > 800 && n < 1200, `ratio 0.5 sampled ${n} of 2000`);
});

test("span urls lose their query string and user info", () => {
  assert.equal(spanUrl("https://user:pw@example.com:8443/a/b.bin?X-Amz-Signature=s#f"), "https://example.com:8443/a/b.bin");
  assert.equal(spanUrl("not a url"), "");
});

const span: FinishedSpan = {
  name: "n",
  kind: 2,
  traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  spanId: "00f067aa0ba902b7",
  parentSpanId: "1111111111111111",
  traceState: "",
  startNs: 1_700_000_000_000_000_001n,
  endNs: 1_700_000_000_500_000_000n,
  attributes: { s: "text", i: 42, neg: -7, big: 2 ** 40, d: 0.25, b: true, f: false },
  status: 2,
  statusMessage: "boom",
};

test("protobuf and JSON encodings carry the same span", () => {
  const resource = { "service.name": "svc", "process.pid": 12 };
  for (const decoded of [decodeProto(encodeTraceRequestProto(resource, { name: "d", version: "1" }, [span])), decodeJson(Buffer.from(JSON.stringify(encodeTraceRequestJson(resource, { name: "d", version: "1" }, [span]))))]) {
    assert.equal(decoded.length, 1);
    const s = decoded[0]!;
    assert.equal(s.service, "svc");
    assert.equal(s.resource["process.pid"], 12);
    assert.equal(s.traceId, span.traceId);
    assert.equal(s.spanId, span.spanId);
    assert.equal(s.parentSpanId, span.parentSpanId);
    assert.equal(s.kind, 2);
    assert.equal(s.startNs, span.startNs);
    assert.equal(s.endNs, span.endNs);
    assert.deepEqual(s.attributes, span.attributes);
    assert.equal(s.statusCode, 2);
  }
});

test("exporter: a full queue drops spans, and shutdown never waits past its deadline", async () => {
  // A receiver that never answers.
  const sockets = new Set<import("node:net").Socket>();
  const hang = http.createServer(() => undefined);
  hang.on("connection", (s) => sockets.add(s));
  hang.listen(0, "127.0.0.1");
  await once(hang, "listening");
  const url = `http://127.0.0.1:${(hang.address() as { port: number }).port}/v1/traces`;
  const warnings: string[] = [];
  const ex = new OtlpExporter({ url, protocol: "http/protobuf", headers: {}, gzip: false, timeoutMs: 60_000, scheduleDelayMs: 10, maxQueue: 5, maxBatch: 2, resource: {}, log: { warn: (_o, m) => warnings.push(m), info: () => undefined } });
  for (let i = 0; i < 20; i++) ex.add(span);
  const t0 = Date.now();
  await ex.shutdown(300);
  assert.ok(Date.now() - t0 < 2_000, `shutdown took ${Date.now() - t0} ms`);
  assert.ok(warnings.includes("tracing: spans dropped (queue full)"), warnings.join("; "));
  for (const s of sockets) s.destroy();
  hang.close();

  // An endpoint where nothing listens: a warning, no exception.
  const gone = new OtlpExporter({ url: `http://127.0.0.1:${await closedPort()}/v1/traces`, protocol: "http/json", headers: {}, gzip: true, timeoutMs: 1_000, scheduleDelayMs: 10, maxQueue: 10, maxBatch: 10, resource: {} });
  gone.add(span);
  await gone.shutdown(2_000);
});

test("a recording tracer: headers and gzip reach the receiver; sampled-out spans propagate without recording", async () => {
  const r = await startOtlpReceiver();
  const seen: http.IncomingHttpHeaders[] = [];
  const probe = http.createServer((req, res) => {
    seen.push(req.headers);
    req.pipe(http.request(`${r.endpoint}/v1/traces`, { method: "POST", headers: req.headers }, (up) => up.pipe(res.writeHead(up.statusCode ?? 500))));
  });
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { createTracer } = await impl();
  const t = createTracer("unit", {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${(probe.address() as { port: number }).port}/v1/traces`,
    OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=abc%20def,bad",
    OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
    OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test",
  });
  const root = t.startSpan("root", { kind: 2 });
  const child = t.startSpan("child", { parent: root });
  assert.equal(child.context!.traceId, root.context!.traceId);
  child.end();
  root.end();
  const off = t.startSpan("remote-unsampled", { parent: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" } });
  assert.equal(off.recording, false);
  assert.equal(traceHeaders(off).traceparent?.endsWith("-00"), true, "the unsampled decision travels on");
  off.end();
  await t.shutdown(3_000);
  assert.deepEqual(r.spans.map((s) => s.name).sort(), ["child", "root"]);
  assert.equal(r.spans.find((s) => s.name === "child")!.parentSpanId, r.spans.find((s) => s.name === "root")!.spanId);
  assert.equal(r.spans[0]!.resource["service.name"], "unit");
  assert.equal(r.spans[0]!.resource["deployment.environment"], "test");
  assert.equal(seen[0]!["x-api-key"], "abc def");
  assert.equal(seen[0]!["content-encoding"], "gzip");
  probe.close();
  await r.close();
});
