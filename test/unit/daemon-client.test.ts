// The DownloadTask client `get` uses, against
// scripted HTTP/2 servers on 127.0.0.1 for what a real daemon rarely does:
// end-of-stream errors with and without our code, broken framing, a missing
// end of stream, a non-200 answer. (The integration tests run it against real
// daemons.)
import { test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { DamselflyError } from "../../src/common/errors.js";
import { create, fromBinary, fromJson, toBinary, toJson, ScalarType, type DescMessage } from "@bufbuild/protobuf";
import { DELIVERY_STORE_PATH, DELIVERY_STREAM, downloadTask, type DownloadEvent, type DownloadTaskJson } from "../../src/cli/daemon-client.js";
import { EVENT_SHAPES, JSON_CODEC } from "../../src/cli/daemon-json.js";
import { daemonv1 } from "../../src/protocol/index.js";
import { prng } from "../helpers/prng.js";

const REQ: DownloadTaskJson = {
  download: {
    url: "http://o/x",
    headers: {},
    tag: "",
    application: "",
    filteredQueryParams: [],
    priority: 0,
    pieceLength: 0,
    disableBackToSource: false,
    digest: "",
  },
  delivery: 2,
};

function frame(flags: number, msg: unknown, binary = false): Buffer {
  const body = binary ? Buffer.from(msg as string, "latin1") : Buffer.from(typeof msg === "string" ? msg : JSON.stringify(msg));
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

async function serve(t: { after: (fn: () => void) => void }, answer: (stream: http2.ServerHttp2Stream, request: unknown) => void): Promise<string> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    assert.equal(headers[":path"], "/damselfly.daemon.v1.DaemonService/DownloadTask");
    const parts: Buffer[] = [];
    stream.on("data", (d: Buffer) => parts.push(d));
    stream.on("end", () => {
      const all = Buffer.concat(parts);
      const body = all.subarray(5, 5 + all.readUInt32BE(1));
      answer(stream, headers["content-type"] === "application/connect+json" ? JSON.parse(body.toString()) : body);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function run(url: string, req: DownloadTaskJson = REQ): Promise<{ events: DownloadEvent[]; error?: DamselflyError }> {
  const events: DownloadEvent[] = [];
  try {
    for await (const ev of downloadTask(url, req, new AbortController().signal)) events.push(ev);
    return { events };
  } catch (err) {
    assert.ok(err instanceof DamselflyError, `a DamselflyError, got ${String(err)}`);
    return { events, error: err };
  }
}

test("events arrive typed (64-bit fields as bigints, zeros left out by proto3 JSON restored); the request is the JSON we sent", async (t) => {
  let got: unknown;
  const url = await serve(t, (stream, request) => {
    got = request;
    stream.respond({ ":status": 200, "content-type": "application/connect+json" });
    // Split across writes, two messages in one write.
    const all = Buffer.concat([
      frame(0, { started: { taskId: "t1", contentLength: "5000000000", contentLengthKnown: true } }),
      frame(0, { progress: { completedBytes: "42" } }),
      frame(0, { somethingNew: {} }),
      frame(0, { finished: { taskId: "t1", contentLength: "5000000000", storePath: "/data/t1", elapsedMs: "7" } }),
      frame(2, {}),
    ]);
    stream.write(all.subarray(0, 3));
    stream.end(all.subarray(3));
  });
  const { events, error } = await run(url);
  assert.equal(error, undefined);
  assert.deepEqual(got, REQ);
  assert.deepEqual(
    events.map((e) => e.case),
    ["started", "progress", undefined, "finished"],
  );
  const started = events[0]!;
  assert.ok(started.case === "started");
  assert.equal(started.value.contentLength, 5_000_000_000n);
  assert.equal(started.value.pieceLength, 0n);
  assert.equal(started.value.localHit, false);
  const finished = events[3]!;
  assert.ok(finished.case === "finished");
  assert.equal(finished.value.storePath, "/data/t1");
  assert.equal(finished.value.bytesFromPeers, 0n);
  assert.equal(finished.value.elapsedMs, 7n);
});

test("an end-of-stream error keeps the daemon's stable code and source status", async (t) => {
  const url = await serve(t, (stream) => {
    stream.respond({ ":status": 200, "content-type": "application/connect+json" });
    stream.end(
      frame(2, {
        error: { code: "not_found", message: "origin answered 404" },
        metadata: { "x-damselfly-error": ["DF_ERR_SOURCE_STATUS"], "x-damselfly-source-status": ["404"] },
      }),
    );
  });
  const { error } = await run(url);
  assert.equal(error?.code, "DF_ERR_SOURCE_STATUS");
  assert.equal(error?.sourceStatus, 404);
  assert.equal(error?.message, "origin answered 404");
});

test("broken answers fail with DF_ERR_INTERNAL, never hang", async (t) => {
  const cases: Array<[string, (s: http2.ServerHttp2Stream) => void, RegExp]> = [
    ["no end of stream", (s) => (s.respond({ ":status": 200 }), s.end(frame(0, { progress: {} }))), /closed the download stream early/],
    ["not JSON", (s) => (s.respond({ ":status": 200 }), s.end(frame(0, "{nope"))), /malformed message/],
    ["a bad integer", (s) => (s.respond({ ":status": 200 }), s.end(frame(0, { started: { contentLength: "-1" } }))), /malformed contentLength/],
    ["a huge frame", (s) => (s.respond({ ":status": 200 }), s.end(Buffer.from([0, 0xff, 0xff, 0xff, 0xff]))), /4294967295-byte message/],
    ["HTTP 415", (s) => (s.respond({ ":status": 415 }), s.end()), /HTTP 415/],
    ["an error without our code", (s) => (s.respond({ ":status": 200 }), s.end(frame(2, { error: { code: "internal", message: "boom" } }))), /boom/],
  ];
  for (const [name, answer, re] of cases) {
    const url = await serve(t, answer);
    const { error } = await run(url);
    assert.equal(error?.code, "DF_ERR_INTERNAL", name);
    assert.match(error?.message ?? "", re, name);
  }
});

test("a daemon that is not there is DF_ERR_DAEMON_UNAVAILABLE naming the socket error", async () => {
  const { error } = await run("http://127.0.0.1:9");
  assert.equal(error?.code, "DF_ERR_DAEMON_UNAVAILABLE");
  assert.match(error?.message ?? "", /daemon unreachable at http:\/\/127\.0\.0\.1:9: connect ECONNREFUSED/);
});

test("the JSON event shapes are the generated messages' fields, by type", () => {
  const oneof = daemonv1.DownloadTaskResponseSchema.oneofs.find((o) => o.localName === "event")!;
  const names = (m: DescMessage, t: ScalarType) =>
    m.fields
      .filter((f) => f.fieldKind === "scalar" && f.scalar === t)
      .map((f) => f.localName)
      .sort();
  for (const f of oneof.fields) {
    if (f.localName === "chunk") continue;
    const shape = EVENT_SHAPES[f.localName as keyof typeof EVENT_SHAPES];
    assert.ok(shape, `${f.localName} has a JSON shape`);
    const m = f.message!;
    assert.equal(shape.typeName, m.typeName);
    assert.deepEqual([...shape.string].sort(), names(m, ScalarType.STRING), `${m.typeName} strings`);
    assert.deepEqual([...shape.uint64].sort(), names(m, ScalarType.UINT64), `${m.typeName} uint64s`);
    assert.deepEqual([...shape.bool].sort(), names(m, ScalarType.BOOL), `${m.typeName} bools`);
    assert.equal(shape.string.length + shape.uint64.length + shape.bool.length, m.fields.length, `${m.typeName}: no other fields`);
  }
});

test("generated events round-trip through the JSON codec; the request is a valid DownloadTaskRequest", () => {
  const rnd = prng(3);
  const str = () => ["", "t1", "/data/x", "héte"][Math.floor(rnd() * 4)]!;
  const u64 = () => [0n, 1n, 5_000_000_000n, 2n ** 64n - 1n][Math.floor(rnd() * 4)]!;
  for (let round = 0; round < 300; round++) {
    const c = (["started", "progress", "finished"] as const)[round % 3]!;
    const shape = EVENT_SHAPES[c];
    const value: Record<string, unknown> = {};
    for (const k of shape.string) value[k] = str();
    for (const k of shape.uint64) value[k] = u64();
    for (const k of shape.bool) value[k] = rnd() < 0.5;
    const msg = create(daemonv1.DownloadTaskResponseSchema, { event: { case: c, value } as never });
    const json = Buffer.from(JSON.stringify(toJson(daemonv1.DownloadTaskResponseSchema, msg)));
    assert.deepEqual(JSON_CODEC.decode(json), msg.event, `round ${round}`);
  }
  assert.deepEqual([DELIVERY_STREAM, DELIVERY_STORE_PATH], [daemonv1.Delivery.STREAM, daemonv1.Delivery.STORE_PATH]);
  const req = fromJson(daemonv1.DownloadTaskRequestSchema, { ...REQ, rateLimit: 1024 } as never);
  assert.equal(req.delivery, daemonv1.Delivery.STORE_PATH);
  assert.equal(req.rateLimit, 1024n);
});

test("stream delivery speaks binary protobuf: chunks arrive whole, across many reads", async (t) => {
  let got: daemonv1.DownloadTaskRequest | undefined;
  const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
  const url = await serve(t, (stream, body) => {
    got = fromBinary(daemonv1.DownloadTaskRequestSchema, body as Buffer);
    stream.respond({ ":status": 200, "content-type": "application/connect+proto" });
    const ev = (event: daemonv1.DownloadTaskResponse["event"]) => {
      const b = toBinary(daemonv1.DownloadTaskResponseSchema, create(daemonv1.DownloadTaskResponseSchema, { event }));
      return frame(0, Buffer.from(b).toString("latin1"), true);
    };
    stream.write(ev({ case: "started", value: create(daemonv1.DownloadStartedSchema, { taskId: "t1", contentLength: BigInt(data.length) }) }));
    stream.write(ev({ case: "chunk", value: create(daemonv1.DownloadChunkSchema, { offset: 0n, data }) }));
    stream.end(
      Buffer.concat([
        ev({ case: "finished", value: create(daemonv1.DownloadFinishedSchema, { taskId: "t1", contentLength: BigInt(data.length) }) }),
        frame(2, {}),
      ]),
    );
  });
  const { events, error } = await run(url, { ...REQ, delivery: 1 });
  assert.equal(error, undefined);
  assert.equal(got?.delivery, daemonv1.Delivery.STREAM);
  assert.equal(got?.download?.url, REQ.download.url);
  assert.deepEqual(
    events.map((e) => e.case),
    ["started", "chunk", "finished"],
  );
  const chunk = events[1]!;
  assert.ok(chunk.case === "chunk");
  assert.ok(Buffer.from(chunk.value.data).equals(data));
});
