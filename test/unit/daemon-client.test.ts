// The lean DownloadTask client `get` uses for store-path delivery, against
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
import { downloadTaskLean, type DownloadEvent, type DownloadTaskJson } from "../../src/cli/daemon-client.js";

const REQ: DownloadTaskJson = {
  download: { url: "http://o/x", headers: {}, tag: "", application: "", filteredQueryParams: [], priority: 0, pieceLength: 0, disableBackToSource: false, digest: "" },
  delivery: 2,
  timeoutMs: 0,
};

function frame(flags: number, msg: unknown): Buffer {
  const body = Buffer.from(typeof msg === "string" ? msg : JSON.stringify(msg));
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

async function serve(t: { after: (fn: () => void) => void }, answer: (stream: http2.ServerHttp2Stream, request: unknown) => void): Promise<string> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    assert.equal(headers[":path"], "/damselfly.daemon.v1.DaemonService/DownloadTask");
    assert.equal(headers["content-type"], "application/connect+json");
    const parts: Buffer[] = [];
    stream.on("data", (d: Buffer) => parts.push(d));
    stream.on("end", () => {
      const all = Buffer.concat(parts);
      answer(stream, JSON.parse(all.subarray(5, 5 + all.readUInt32BE(1)).toString()));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function run(url: string): Promise<{ events: DownloadEvent[]; error?: DamselflyError }> {
  const events: DownloadEvent[] = [];
  try {
    for await (const ev of downloadTaskLean(url, REQ, new AbortController().signal)) events.push(ev);
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
    stream.end(frame(2, { error: { code: "not_found", message: "origin answered 404" }, metadata: { "x-damselfly-error": ["DF_ERR_SOURCE_STATUS"], "x-damselfly-source-status": ["404"] } }));
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
