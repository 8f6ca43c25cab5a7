import { test } from "node:test";
import assert from "node:assert/strict";
import { Registry, Counter } from "prom-client";
import { cachedCheck, Health } from "../../src/common/health.js";
import { MetricsServer } from "../../src/common/metrics-server.js";
import { createLogger } from "../../src/common/logger.js";
import { formatHostPort } from "../../src/common/address.js";
import { httpGet, parsePrometheus, metric } from "../helpers/metrics.js";

test("readiness: every check runs; a throwing check is a reason, not a crash", async () => {
  const h = new Health()
    .addCheck("a", () => undefined)
    .addCheck("b", async () => "b is down")
    .addCheck("c", () => {
      throw new Error("c exploded");
    });
  assert.deepEqual(await h.readiness(), { ready: false, checks: { a: "ok", b: "b is down", c: "c exploded" } });
  h.addCheck("b", () => undefined).addCheck("c", () => undefined);
  assert.deepEqual(await h.readiness(), { ready: true, checks: { a: "ok", b: "ok", c: "ok" } });
});

test("cachedCheck probes at most once per ttl and shares a probe under way", async (t) => {
  // The ttl runs on a mocked Date: no stall of a busy machine ages the cache.
  t.mock.timers.enable({ apis: ["Date"], now: 1_000_000 });
  let probes = 0;
  let answer: string | undefined = "not yet";
  const check = cachedCheck(async () => {
    probes++;
    await new Promise((r) => setTimeout(r, 20));
    return answer;
  }, 200);
  const [x, y] = await Promise.all([check(), check()]);
  assert.equal(x, "not yet");
  assert.equal(y, "not yet");
  assert.equal(probes, 1);
  answer = undefined;
  t.mock.timers.tick(199);
  assert.equal(await check(), "not yet", "still cached");
  t.mock.timers.tick(1);
  assert.equal(await check(), undefined);
  assert.equal(probes, 2);
});

test("the metrics server: /metrics, health, 404 and 405", async (t) => {
  const registry = new Registry();
  new Counter({ name: "damselfly_test_total", help: "a test counter", labelNames: ["x"], registers: [registry] }).inc({ x: 'quote"d' }, 3);
  let ready: string | undefined = "warming up";
  const server = new MetricsServer({ listen: "127.0.0.1:0", registry, health: new Health().addCheck("x", () => ready), logger: createLogger("silent") });
  await server.start();
  t.after(() => server.close());
  const base = `http://${formatHostPort(server.address)}`;
  const m = await httpGet(`${base}/metrics`);
  assert.equal(m.status, 200);
  const samples = parsePrometheus(m.body);
  assert.equal(metric(samples, "damselfly_test_total"), 3);
  assert.ok(metric(samples, "damselfly_process_cpu_seconds_total") > 0, "default metrics, prefixed");
  assert.equal((await httpGet(`${base}/metrics`, "HEAD")).body, "");
  assert.deepEqual(await httpGet(`${base}/healthz`), { status: 200, body: "ok\n" });
  const r = await httpGet(`${base}/readyz`);
  assert.equal(r.status, 503);
  assert.deepEqual(JSON.parse(r.body), { status: "not ready", checks: { x: "warming up" } });
  ready = undefined;
  assert.deepEqual(await httpGet(`${base}/readyz?verbose=1`), { status: 200, body: "ok\n" });
  for (const p of ["/", "/metricsx", "/a/metrics", "/..%2fmetrics"]) assert.equal((await httpGet(base + p)).status, 404, p);
  for (const method of ["POST", "PUT", "DELETE"]) {
    assert.equal((await httpGet(`${base}/metrics`, method)).status, 405, method);
    assert.equal((await httpGet(`${base}/healthz`, method)).status, 405, method);
  }
});

test("/readyz names the failing checks only when the listener asks for detail", async () => {
  const h = new Health().addCheck("scheduler", () => "no scheduler answered (10.0.0.9:8002)");
  const answer = async (detail?: boolean) => {
    let status = 0;
    let text = "";
    await h.answer("/readyz", "GET", { writeHead: (s: number) => (status = s), end: (b: string) => (text = b) }, detail === undefined ? {} : { detail });
    return { status, body: JSON.parse(text) as unknown };
  };
  assert.deepEqual(await answer(), { status: 503, body: { status: "not ready" } });
  assert.deepEqual(await answer(false), { status: 503, body: { status: "not ready" } });
  assert.deepEqual(await answer(true), { status: 503, body: { status: "not ready", checks: { scheduler: "no scheduler answered (10.0.0.9:8002)" } } });
});
