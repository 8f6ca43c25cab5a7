// The daemon's node-ready signal (peer/node-ready.ts) against the fixture API
// server, on a fake clock: no label while the mirror does not answer, the
// label and the taint removal once it does, false on stop (the taint not put
// back), retries with backoff, and one log line per change.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Logger } from "../../src/common/logger.js";
import { inClusterAccess } from "../../src/common/kubernetes/in-cluster.js";
import { KubeClient } from "../../src/common/kubernetes/kube-client.js";
import { NodeReady, probeMirror } from "../../src/peer/node-ready.js";
import { FakeClock } from "../helpers/fake-clock.js";
import { startKubeApi, type KubeApi } from "../helpers/kube-api.js";
import { closedPort } from "../helpers/procs.js";

const LABEL = "damselfly.io/mirror-ready";
const TAINT = "damselfly.io/mirror-not-ready";
const RECHECK_MS = 300_000;

async function setup(t: TestContext, mirrorPort: number) {
  const dir = mkdtempSync(join(tmpdir(), "node-ready-"));
  const api: KubeApi = await startKubeApi(dir);
  api.writeServiceAccount();
  api.addNode("n1", {
    taints: [
      { key: "keep-me", effect: "NoSchedule" },
      { key: TAINT, effect: "NoSchedule" },
    ],
  });
  const client = new KubeClient(inClusterAccess(api.saDir, api.env));
  const clock = new FakeClock();
  // Log lines as objects, synchronously (pino over a plain writable).
  const lines: { msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) }) as unknown as Logger;
  const ready = new NodeReady({
    nodeName: "n1",
    readyLabel: LABEL,
    notReadyTaint: TAINT,
    client,
    probe: (signal) => probeMirror({ host: "127.0.0.1", port: mirrorPort }, 5_000, signal),
    clock,
    logger,
    backoff: { initialMs: 1_000, maxMs: 4_000 },
    recheckMs: RECHECK_MS,
  });
  t.after(async () => {
    await client.close();
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const logs = async (msg: string) => lines.filter((l) => l.msg.includes(msg));
  return { api, ready, clock, logs };
}

function mirror(port: number): Promise<http.Server> {
  const s = http.createServer((req, res) => res.writeHead(req.url === "/v2/" ? 401 : 404).end());
  return new Promise((resolve) => s.listen(port, "127.0.0.1", () => resolve(s)));
}

const taintKeys = (api: KubeApi) => (api.nodes.get("n1").spec.taints ?? []).map((x: { key: string }) => x.key);

test("no label while the mirror does not answer; once it does: label true, taint gone; stop: label false, taint not back", async (t) => {
  const port = await closedPort();
  const { api, ready, clock, logs } = await setup(t, port);
  ready.start();
  await ready.running;
  for (const step of [1_000, 2_000, 4_000, 4_000]) {
    assert.equal(api.nodes.get("n1").metadata.labels[LABEL], undefined, "labelled before the mirror answered");
    assert.equal(clock.nextTimerAt() - clock.now(), step, "backoff doubles up to its cap");
    clock.advance(step);
    await ready.running;
  }
  assert.deepEqual(taintKeys(api), ["keep-me", TAINT]);
  assert.equal(api.requests.length, 0, "the API server is not asked while the mirror is down");
  assert.equal((await logs("retrying")).length, 1, "one log line for the same failure, however many retries");
  assert.equal((await logs("retrying"))[0].code, "DF_ERR_MIRROR_UNAVAILABLE");

  const server = await mirror(port);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  clock.advance(4_000);
  await ready.running;
  assert.equal(ready.state, "ready");
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "true");
  assert.deepEqual(taintKeys(api), ["keep-me"], "only our taint is removed");
  assert.equal(clock.nextTimerAt() - clock.now(), RECHECK_MS, "once done, only the periodic re-check");
  assert.equal((await logs("node marked ready for pulls"))[0].mirrorStatus, 401);
  assert.equal((await logs("node taint removed")).length, 1);

  await ready.stop();
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "false");
  assert.deepEqual(taintKeys(api), ["keep-me"], "the taint is not put back on shutdown");
});

test("a rejected token is logged once with DF_ERR_KUBE_AUTH and retried; a fixed token then works", async (t) => {
  const server = await mirror(0);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const { api, ready, clock, logs } = await setup(t, port);
  api.tokens.clear();
  ready.start();
  await ready.running;
  for (let i = 0; i < 3; i++) {
    clock.advance(clock.nextTimerAt() - clock.now());
    await ready.running;
  }
  const failed = await logs("retrying");
  assert.equal(failed.length, 1);
  assert.equal(failed[0].code, "DF_ERR_KUBE_AUTH");
  assert.doesNotMatch(JSON.stringify(failed[0]), /fixture-token/, "the token is never logged");
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], undefined);
  api.tokens.add("fixture-token");
  clock.advance(clock.nextTimerAt() - clock.now());
  await ready.running;
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "true");
  // stop(): one merge patch, the label to false.
  const patches = api.requests.filter((r) => r.method === "PATCH").length;
  await ready.stop();
  assert.equal(api.requests.filter((r) => r.method === "PATCH").length, patches + 1);
});

test("stop before the mirror answered: no attempt left, the label is not touched", async (t) => {
  const { api, ready, clock } = await setup(t, await closedPort());
  ready.start();
  await ready.running;
  await ready.stop();
  assert.equal(clock.nextTimerAt(), Infinity);
  assert.equal(api.requests.length, 0);
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], undefined);
});

test("re-checks: a removed label is put back; a mirror that stops answering turns it false, and true again when it answers", async (t) => {
  const port = await closedPort();
  let server = await mirror(port);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const { api, ready, clock, logs } = await setup(t, port);
  ready.start();
  await ready.running;
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "true");

  // Someone removes the label: the next re-check puts it back.
  delete api.nodes.get("n1").metadata.labels[LABEL];
  clock.advance(RECHECK_MS);
  await ready.running;
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "true");
  assert.equal((await logs("node marked ready for pulls")).length, 2);

  // The mirror stops answering: false at the next re-check, then retries.
  await new Promise<void>((r) => server.close(() => r()));
  clock.advance(RECHECK_MS);
  await ready.running;
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "false");
  assert.equal(ready.state, "waiting");
  assert.equal((await logs("the registry mirror stopped answering")).length, 1);
  assert.equal(clock.nextTimerAt() - clock.now(), 1_000, "back to the first backoff step");

  // It answers again: true.
  server = await mirror(port);
  clock.advance(1_000);
  await ready.running;
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "true");
  assert.equal(ready.state, "ready");
  await ready.stop();
  assert.equal(api.nodes.get("n1").metadata.labels[LABEL], "false");
});
