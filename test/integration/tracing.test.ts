// OpenTelemetry: one `get` is one trace across the get client, the daemon, the
// scheduler and the seed peer, received by a real OTLP/HTTP receiver; with
// tracing off nothing is sent and the tracing code is never loaded.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { startCluster, type Cluster } from "../helpers/cluster.js";
import { randomBytesSeeded, startOrigin, sha256Hex, type Origin } from "../helpers/origin.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.js";
import { REPO_ROOT } from "../helpers/procs.js";
import { sha256File, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const SECRET = "s3cr3t-t0ken";

describe("tracing", { timeout: 90_000 }, () => {
  let origin: Origin;
  let receiver: OtlpReceiver;
  let cluster: Cluster;
  let otel: Record<string, string>;

  before(async () => {
    origin = await startOrigin();
    receiver = await startOtlpReceiver();
    // Batches leave every 200 ms instead of 5 s: the test need not wait.
    otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: "200" };
    cluster = await startCluster({ peers: 1, seed: true, env: otel });
  });
  after(async () => {
    await cluster?.stop();
    await receiver?.close();
    await origin?.close();
  });

  test("one get is one trace: get -> daemon -> scheduler -> seed peer, parents consistent, no secrets", async (t) => {
    const dir = tempDir(t);
    const expected = sha256Hex(origin.addRandomFile("/traced.bin", 6 * MiB, "traced"));
    // A signed URL and a credential header: neither may reach a span.
    const url = `${origin.url("/traced.bin")}?X-Amz-Signature=${SECRET}&X-Amz-Credential=${SECRET}`;
    const out = join(dir, "out.bin");
    // The get speaks JSON, the daemons protobuf: both encodings are exercised.
    const r = await cluster.peers[0]!.get([url, "-O", out, "--no-progress", "-H", `Authorization: Bearer ${SECRET}`], {
      env: { ...otel, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(out), expected);

    const root = (await receiver.waitFor((s) => s.some((x) => x.service === "damselfly-get" && x.name === "get"))).find((x) => x.service === "damselfly-get")!;
    const trace = root.traceId;
    const inTrace = () => receiver.spans.filter((s) => s.traceId === trace);
    const find = (service: string, name: string, pred: (s: ReceivedSpan) => boolean = () => true) =>
      inTrace().find((s) => s.service === service && s.name === name && pred(s));
    // Each process sends its spans on its own schedule (200 ms batches).
    const want: Array<[string, string]> = [
      ["damselfly-daemon", "DownloadTask"],
      ["damselfly-daemon", "peer download"],
      ["damselfly-daemon", "pieces from parent"],
      ["damselfly-scheduler", "TriggerSeed"],
      ["damselfly-seed-peer", "TriggerTask"],
      ["damselfly-seed-peer", "peer download"],
      ["damselfly-seed-peer", "back-to-source"],
    ];
    await receiver.waitFor(() => want.every(([svc, name]) => find(svc, name) !== undefined));
    const spans = inTrace();
    t.diagnostic(`trace ${trace}: ${spans.length} spans: ${spans.map((s) => `${s.service}/${s.name}`).join(", ")}`);

    const services = new Set(spans.map((s) => s.service));
    for (const svc of ["damselfly-get", "damselfly-daemon", "damselfly-scheduler", "damselfly-seed-peer"])
      assert.ok(services.has(svc), `no ${svc} span in the trace`);
    assert.ok(
      receiver.contentTypes.includes("application/json") && receiver.contentTypes.includes("application/x-protobuf"),
      `content types ${receiver.contentTypes.join(", ")}`,
    );

    // The chain of parents, process to process.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parentOf = (s: ReceivedSpan | undefined) => (s ? byId.get(s.parentSpanId) : undefined);
    assert.equal(root.parentSpanId, "", "the get span is the root");
    const api = find("damselfly-daemon", "DownloadTask")!;
    assert.equal(parentOf(api), root, "DownloadTask is a child of get");
    const peerDl = find("damselfly-daemon", "peer download")!;
    assert.equal(parentOf(peerDl), api, "the daemon's download is a child of DownloadTask");
    const reg = find("damselfly-scheduler", "RegisterPeer", (s) => s.parentSpanId === peerDl.spanId);
    assert.ok(reg, "the scheduler's RegisterPeer is a child of the daemon's download");
    const trigger = find("damselfly-scheduler", "TriggerSeed")!;
    assert.equal(parentOf(trigger), reg, "TriggerSeed is a child of the registration that caused it");
    const seedApi = find("damselfly-seed-peer", "TriggerTask")!;
    assert.equal(parentOf(seedApi), trigger, "the seed's TriggerTask is a child of TriggerSeed");
    const seedDl = find("damselfly-seed-peer", "peer download")!;
    assert.equal(parentOf(seedDl), seedApi);
    const seedReg = find("damselfly-scheduler", "RegisterPeer", (s) => s.parentSpanId === seedDl.spanId);
    assert.equal(seedReg?.attributes["damselfly.decision"], "need_back_to_source", "the seed registers in the same trace and is sent to the origin");
    assert.equal(parentOf(find("damselfly-seed-peer", "back-to-source")), seedDl);
    const fromParent = find("damselfly-daemon", "pieces from parent");
    assert.equal(parentOf(fromParent), peerDl, "per-parent span under the daemon's download");
    assert.equal(fromParent?.attributes["damselfly.seed"], true);
    // Every span's parent is in the trace (or it is the root), and a span
    // starts no earlier than its parent.
    for (const s of spans) {
      if (s === root) continue;
      const p = byId.get(s.parentSpanId);
      assert.ok(p, `${s.service}/${s.name} has a parent outside the trace`);
      assert.ok(s.startNs >= p.startNs - 50_000_000n, `${s.service}/${s.name} starts before its parent ${p.service}/${p.name}`);
    }

    // What the spans say.
    assert.equal(api.attributes["damselfly.bytes_from_peers"], 6 * MiB);
    assert.equal(api.attributes["damselfly.bytes_from_origin"], 0);
    assert.equal(api.attributes["url.full"], origin.url("/traced.bin"), "url without its query");
    assert.equal(root.attributes["damselfly.task_id"], api.attributes["damselfly.task_id"]);
    assert.equal(seedDl.attributes["damselfly.bytes_from_origin"], 6 * MiB);
    const pids = new Set(spans.map((s) => s.resource["process.pid"]));
    assert.ok(pids.size >= 4, "spans come from four processes");
    const all = JSON.stringify(receiver.spans, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));
    assert.ok(!all.includes(SECRET), "a secret reached a span");
  });

  test("a proxied blob continues the client's trace: proxy blob -> peer download -> scheduler", async () => {
    const data = randomBytesSeeded(3 * MiB, "proxied");
    const digest = sha256Hex(data);
    const path = `/v2/lib/app/blobs/sha256:${digest}`;
    origin.addFile(path, data);
    const clientTrace = "0af7651916cd43dd8448eb211c80319c";
    const clientSpan = "b7ad6b7169203331";
    const peer = cluster.peers[0]!;
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = http.get(
        `${peer.proxyUrl}${path}`,
        { headers: { "x-damselfly-registry": `127.0.0.1:${origin.port}`, traceparent: `00-${clientTrace}-${clientSpan}-01` } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on("error", reject);
    });
    assert.equal(sha256Hex(body), digest);
    const spans = await receiver.waitFor((all) => {
      const mine = all.filter((x) => x.traceId === clientTrace);
      return (
        ["proxy blob", "peer download"].every((n) => mine.some((x) => x.service === "damselfly-daemon" && x.name === n)) &&
        mine.some((x) => x.service === "damselfly-scheduler")
      );
    });
    const mine = spans.filter((x) => x.traceId === clientTrace);
    const proxy = mine.find((x) => x.name === "proxy blob")!;
    assert.equal(proxy.parentSpanId, clientSpan, "the proxy span continues the client's span");
    assert.equal(proxy.attributes["damselfly.served_by"], "p2p");
    assert.equal(proxy.attributes["url.full"], origin.url(path));
    const dl = mine.find((x) => x.service === "damselfly-daemon" && x.name === "peer download")!;
    assert.equal(dl.parentSpanId, proxy.spanId);
    assert.ok(mine.some((x) => x.service === "damselfly-scheduler" && x.name === "RegisterPeer" && x.parentSpanId === dl.spanId));
  });

  test("tracing off: no span sent, no tracing module loaded, in the get and in the daemon", async (t) => {
    const dir = tempDir(t);
    const probe = pathToFileURL(join(REPO_ROOT, "dist", "test", "helpers", "tracing-probe.js")).href;
    const off = {
      OTEL_EXPORTER_OTLP_ENDPOINT: undefined,
      OTEL_BSP_SCHEDULE_DELAY: undefined,
      NODE_OPTIONS: `--import=${probe}`,
      TRACING_PROBE_OUT: join(dir, "probe"),
    };
    const d = await cluster.addDaemon({ name: "untraced", env: off });
    const expected = sha256Hex(origin.addRandomFile("/untraced.bin", 2 * MiB, "untraced"));
    const before = receiver.spans.length;
    const r = await d.get([origin.url("/untraced.bin"), "-O", join(dir, "out.bin"), "--no-progress"], { env: off });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(join(dir, "out.bin")), expected);
    assert.equal(await cluster.stopDaemon(d), 0);
    // The scheduler and the seed still trace (their own root spans); nothing
    // may come from the untraced processes.
    await new Promise((res) => setTimeout(res, 600));
    const pids = new Set([d.proc.pid]);
    const leaked = receiver.spans.slice(before).filter((s) => s.service === "damselfly-get" || pids.has(Number(s.resource["process.pid"])));
    assert.deepEqual(
      leaked.map((s) => `${s.service}/${s.name}`),
      [],
    );
    const probes = readdirSync(dir).filter((f) => f.startsWith("probe."));
    assert.equal(probes.length, 2, `one probe file per process (get, daemon): ${probes.join(", ")}`);
    for (const f of probes) assert.equal(readFileSync(join(dir, f), "utf8"), "not-loaded", `${f}: tracing code was loaded`);
  });
});
