// The tracing facade, the W3C trace context, samplers, what the SDK sends
// (both OTLP/HTTP encodings, read by the test receiver's own decoder) and the
// exporter's limits.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import { initTracing, SpanKind, spanUrl, startSpan, traceHeaders, tracer, tracingWanted, type Tracer, type TracingLog } from "../../src/common/trace.js";
import { startOtlpReceiver } from "../helpers/otlp-receiver.js";
import { closedPort } from "../helpers/procs.js";
import { otelPackagesLoaded, tracingLoaded } from "../helpers/tracing-probe.js";

// The SDK is imported only after the first test.
const impl = () => import("../../src/common/otel/tracer-impl.js");

// A tracer made with these OTEL_* variables (the SDK reads process.env while
// it is built), the others unset.
async function tracerWith(vars: Record<string, string>, log?: TracingLog): Promise<Tracer> {
  const saved = { ...process.env };
  for (const k of Object.keys(process.env)) if (k.startsWith("OTEL_")) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return await (await impl()).createTracer("unit", log);
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

test("off by default: a no-op span, no context sent, no tracing module loaded", async () => {
  // First in this file: nothing has imported the SDK yet.
  const t = await initTracing("x", undefined, {});
  assert.equal(t.enabled, false);
  assert.equal(tracingLoaded(), undefined);
  const s = startSpan("a", { attributes: { k: "v" } });
  assert.equal(s.recording, false);
  assert.equal(s, startSpan("b"), "one shared no-op span");
  assert.deepEqual(traceHeaders(s), {});
  assert.equal(tracer().enabled, false);
  // The probe sees the SDK once something loads it.
  await impl();
  assert.ok(otelPackagesLoaded().includes("@opentelemetry/sdk-trace"), otelPackagesLoaded().join(", "));
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

test("samplers: parent-based follows the caller, ratio decides by trace id", async () => {
  const { samplerFromEnv } = await import("../../src/common/otel/sdk-config.js");
  const { ROOT_CONTEXT, trace } = await import("@opentelemetry/api");
  const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: "a".repeat(32), spanId: "b".repeat(16), traceFlags: 0, isRemote: true });
  const sampled = (env: NodeJS.ProcessEnv, traceId: string, ctx = ROOT_CONTEXT) =>
    samplerFromEnv(env).shouldSample(ctx, traceId, "n", 0, {}, []).decision === 2;
  assert.equal(sampled({}, "c".repeat(32), parent), false);
  assert.equal(sampled({}, "c".repeat(32)), true);
  assert.equal(sampled({ OTEL_TRACES_SAMPLER: "always_on" }, "c".repeat(32), parent), true);
  assert.equal(sampled({ OTEL_TRACES_SAMPLER: "always_off" }, "c".repeat(32)), false);
  const half = { OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.5" };
  assert.equal(sampled(half, "0".repeat(31) + "1"), true);
  assert.equal(sampled(half, "f".repeat(8) + "0".repeat(24)), false);
  let n = 0;
  for (let i = 0; i < 2000; i++) if (sampled(half, randomBytes(16).toString("hex"))) n++;
  assert.ok(n > 800 && n < 1200, `ratio 0.5 sampled ${n} of 2000`);
  const warnings: string[] = [];
  samplerFromEnv({ OTEL_TRACES_SAMPLER: "nope", OTEL_TRACES_SAMPLER_ARG: "2" }, { warn: (_o, m) => warnings.push(m), info: () => undefined });
  assert.equal(warnings.length, 2, warnings.join("; "));
});

test("span urls lose their query string and user info", () => {
  assert.equal(spanUrl("https://user:pw@example.com:8443/a/b.bin?X-Amz-Signature=s#f"), "https://example.com:8443/a/b.bin");
  assert.equal(spanUrl("not a url"), "");
});

test("protobuf and JSON carry the same span: kinds, parents, every attribute type, errors", async () => {
  for (const protocol of ["http/protobuf", "http/json"]) {
    const r = await startOtlpReceiver();
    const t = await tracerWith({
      OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=test",
    });
    const before = BigInt(Date.now()) * 1_000_000n;
    const attributes = { s: "text", i: 42, neg: -7, big: 2 ** 40, d: 0.25, b: true, f: false };
    const root = t.startSpan("root", { kind: SpanKind.SERVER, attributes: { ...attributes, gone: undefined } });
    const child = t.startSpan("child", { kind: SpanKind.CLIENT, parent: root });
    child.setAttribute("long", "x".repeat(5000)).setError(new Error("boom"));
    child.end();
    root.end();
    await t.shutdown(3_000);
    assert.deepEqual(r.contentTypes, [protocol === "http/json" ? "application/json" : "application/x-protobuf"]);
    const got = (n: string) => r.spans.find((s) => s.name === n)!;
    assert.equal(got("root").kind, 2);
    assert.equal(got("child").kind, 3);
    assert.deepEqual(got("root").attributes, attributes);
    assert.equal(got("root").traceId, root.context!.traceId);
    assert.equal(got("root").spanId, root.context!.spanId);
    assert.equal(got("root").parentSpanId, "");
    assert.equal(got("child").parentSpanId, root.context!.spanId);
    assert.equal(got("child").statusCode, 2);
    assert.equal(got("child").attributes["error.type"], "DF_ERR_INTERNAL");
    assert.equal(String(got("child").attributes["long"]).length, 1024);
    assert.ok(got("root").startNs >= before - 50_000_000n, `${got("root").startNs} ${before}`);
    assert.ok(got("root").endNs >= got("root").startNs);
    assert.equal(got("root").resource["service.name"], "unit");
    assert.equal(got("root").resource["deployment.environment"], "test");
    assert.equal(got("root").resource["process.pid"], process.pid);
    await r.close();
  }
});

test("exporter: shutdown never waits past its deadline; a receiver that is gone is a warning, no exception", async () => {
  // A receiver that never answers.
  const sockets = new Set<import("node:net").Socket>();
  const hang = http.createServer(() => undefined);
  hang.on("connection", (s) => sockets.add(s));
  hang.listen(0, "127.0.0.1");
  await once(hang, "listening");
  const slow = await tracerWith({
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(hang.address() as { port: number }).port}`,
    // The exporter alone would wait 2 minutes: only shutdown's own deadline can end it sooner.
    OTEL_EXPORTER_OTLP_TIMEOUT: "120000",
    OTEL_BSP_SCHEDULE_DELAY: "10",
    OTEL_BSP_MAX_QUEUE_SIZE: "5",
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "2",
  });
  for (let i = 0; i < 20; i++) slow.startSpan("s").end();
  let guard: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    slow.shutdown(300).then(() => "returned"),
    new Promise<string>((resolve) => (guard = setTimeout(() => resolve("hung"), 30_000))),
  ]);
  clearTimeout(guard);
  assert.equal(outcome, "returned", "shutdown waits for the hanging exporter instead of its own deadline");
  for (const s of sockets) s.destroy();
  hang.close();

  // An endpoint where nothing listens.
  const warnings: string[] = [];
  const log: TracingLog = { warn: (_o, m) => warnings.push(m), info: () => undefined };
  const gone = await tracerWith(
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await closedPort()}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
      OTEL_EXPORTER_OTLP_TIMEOUT: "300",
    },
    log,
  );
  gone.startSpan("s").end();
  await gone.shutdown(2_000);
  assert.ok(
    warnings.some((w) => w.startsWith("tracing: ")),
    warnings.join("; "),
  );
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
  const t = await tracerWith({
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${(probe.address() as { port: number }).port}/v1/traces`,
    OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=abc%20def,bad",
    OTEL_EXPORTER_OTLP_COMPRESSION: "gzip",
  });
  const root = t.startSpan("root", { kind: 2 });
  const child = t.startSpan("child", { parent: root });
  assert.equal(child.context!.traceId, root.context!.traceId);
  child.end();
  root.end();
  const remote = t.startSpan("remote", { parent: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tracestate: "k=v" } });
  assert.deepEqual(traceHeaders(remote), { traceparent: `00-4bf92f3577b34da6a3ce929d0e0e4736-${remote.context!.spanId}-01`, tracestate: "k=v" });
  remote.end();
  const off = t.startSpan("remote-unsampled", { parent: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00" } });
  assert.equal(off.recording, false);
  assert.equal(traceHeaders(off).traceparent?.endsWith("-00"), true, "the unsampled decision travels on");
  off.end();
  await t.shutdown(3_000);
  assert.deepEqual(r.spans.map((s) => s.name).sort(), ["child", "remote", "root"]);
  assert.equal(r.spans.find((s) => s.name === "child")!.parentSpanId, r.spans.find((s) => s.name === "root")!.spanId);
  assert.equal(r.spans.find((s) => s.name === "remote")!.parentSpanId, "00f067aa0ba902b7");
  assert.equal(seen[0]!["x-api-key"], "abc def");
  assert.equal(seen[0]!["content-encoding"], "gzip");
  probe.close();
  await r.close();
});
