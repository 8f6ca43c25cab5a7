// The child's side of a sync stream on real sockets (127.0.0.1): lines cut
// anywhere by TCP or by the chunk framing arrive whole and in order, a
// stream ends where the caller says it has what it needs, and a parent that
// refuses, breaks off, goes quiet or sends garbage fails the stream with a
// clear error instead of hanging.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { readSyncStream, type SyncStreamOptions } from "../../src/peer/download/sync-client.js";
import { SyncLineSplitter, encodeSyncLine, type SyncMessage } from "../../src/protocol/data-plane.js";
import { DamselflyError } from "../../src/common/errors.js";

async function listen(server: net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as net.AddressInfo).port;
}

function opts(port: number, extra: Partial<SyncStreamOptions> = {}): SyncStreamOptions {
  return {
    host: "127.0.0.1",
    port,
    path: "/v1/tasks/t/sync?peer=c1",
    connectTimeoutMs: 2_000,
    headTimeoutMs: 2_000,
    idleTimeoutMs: 2_000,
    signal: new AbortController().signal,
    label: "p1",
    ...extra,
  };
}

const untilDone =
  (got: SyncMessage[]) =>
  (m: SyncMessage): boolean => {
    got.push(m);
    return m.type === "done" || m.type === "failed";
  };

test("messages split across chunks and TCP writes arrive whole and in order, and the stream ends at done", async (t) => {
  const messages: SyncMessage[] = [
    { type: "info", contentLength: 1 << 30, pieceLength: 1 << 20 },
    { type: "pieces", pieces: Array.from({ length: 300 }, (_, i) => [i, (i * 2654435761) >>> 0, 1 << 20] as [number, number, number]) },
    { type: "ping" },
    { type: "failed", code: "DF_ERR_X", message: "naïve ünïcode, split anywhere" },
    { type: "suggest", pieces: [5, 9] },
    { type: "done" },
    // After done: never handed to the caller.
    { type: "suggest-end" },
  ];
  const wire = Buffer.from(messages.map(encodeSyncLine).join(""));
  let path = "";
  const server = http.createServer(async (req, res) => {
    path = req.url ?? "";
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    // Odd-sized writes, each its own chunk: boundaries fall inside lines.
    for (let at = 0; at < wire.length; at += 37) {
      res.write(wire.subarray(at, at + 37));
      if (at % 370 === 0) await sleep(1);
    }
    // Left open: the child, not the parent, ends the stream at "done".
  });
  t.after(() => server.close());
  t.after(() => server.closeAllConnections());
  const port = await listen(server);
  const got: SyncMessage[] = [];
  await readSyncStream(opts(port), (m) => {
    got.push(m);
    return m.type === "done";
  });
  assert.equal(path, "/v1/tasks/t/sync?peer=c1");
  assert.deepEqual(got, messages.slice(0, 6));
});

test("a line split by the framing keeps its place; an encoding's partial character is not decoded early", () => {
  const got: SyncMessage[] = [];
  const s = new SyncLineSplitter((m) => got.push(m));
  const line = Buffer.from(encodeSyncLine({ type: "failed", code: "DF_ERR_X", message: "ü€" }) + encodeSyncLine({ type: "done" }));
  const euro = line.indexOf(Buffer.from("€"));
  s.push(line.subarray(0, euro + 1));
  s.push(line.subarray(euro + 1, euro + 2));
  assert.equal(got.length, 0);
  s.push(line.subarray(euro + 2));
  assert.deepEqual(got, [{ type: "failed", code: "DF_ERR_X", message: "ü€" }, { type: "done" }]);
  assert.throws(() => new SyncLineSplitter(() => undefined).push(Buffer.from('{"type":"pieces","pieces":[[1,2]]}\n')), /malformed piece entry/);
});

test("an HTTP error answer fails the stream; 404 is temporary, the status is in the message", async (t) => {
  const server = http.createServer((req, res) => {
    const status = req.url!.includes("gone") ? 404 : 500;
    res.writeHead(status, { "content-type": "application/json" }).end('{"code":"DF_ERR_TASK_NOT_FOUND"}\n');
  });
  t.after(() => server.close());
  const port = await listen(server);
  const e404 = await readSyncStream(opts(port, { path: "/v1/tasks/gone/sync" }), () => false).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(e404 instanceof DamselflyError && e404.code === "DF_ERR_PARENT_FAILED" && e404.temporary, String(e404));
  assert.match(e404.message, /HTTP 404/);
  const e500 = await readSyncStream(opts(port), () => false).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(e500 instanceof DamselflyError && !e500.temporary && /HTTP 500/.test(e500.message), String(e500));
});

test("a parent that breaks off, goes quiet, or sends bad framing or bad lines fails the stream", async (t) => {
  const cases: Record<string, string> = {
    early: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n" + '{"type":"ping"}\n' + "\r\n",
    framing: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    crlf: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n" + '{"type":"ping"}\n' + "XY",
    line: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n{nope\n\r\n",
    head: "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    quiet: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
  };
  const server = net.createServer((sock) => {
    sock.once("data", (req) => {
      const name = /sync\/(\w+)/.exec(req.toString())![1]!;
      sock.write(cases[name]!);
      if (name === "early") sock.end();
    });
    sock.on("error", () => undefined);
  });
  t.after(() => server.close());
  const port = await listen(server);
  const fails = async (name: string, re: RegExp, extra: Partial<SyncStreamOptions> = {}): Promise<void> => {
    const got: SyncMessage[] = [];
    const err = await readSyncStream(opts(port, { path: `/sync/${name}`, ...extra }), untilDone(got)).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof Error, `${name}: expected a failure`);
    assert.match(err.message, re, name);
  };
  await fails("early", /closed early/);
  await fails("framing", /malformed chunk size/);
  await fails("crlf", /malformed chunk framing/);
  await fails("line", /JSON|Unexpected|Expected/);
  await fails("head", /malformed HTTP response/);
  const t0 = Date.now();
  // The other timeouts are far off: only the idle timeout can end it.
  await fails("quiet", /went quiet/, { idleTimeoutMs: 300, connectTimeoutMs: 60_000, headTimeoutMs: 60_000 });
  assert.ok(Date.now() - t0 < 30_000, "the idle timeout, not a 60 s one, ended it");
});

test("the caller's abort ends the stream at once with its reason", async (t) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    res.write(encodeSyncLine({ type: "ping" }));
  });
  t.after(() => server.close());
  t.after(() => server.closeAllConnections());
  const port = await listen(server);
  const ac = new AbortController();
  const got: SyncMessage[] = [];
  const p = readSyncStream(opts(port, { signal: ac.signal }), (m) => {
    got.push(m);
    ac.abort(new Error("parent dropped"));
    return false;
  });
  await assert.rejects(p, /parent dropped/);
  assert.deepEqual(got, [{ type: "ping" }]);
  // Unreachable parent: a connection error, not a hang.
  const closed = net.createServer();
  const deadPort = await listen(closed);
  closed.close();
  await assert.rejects(
    readSyncStream(opts(deadPort), () => false),
    /ECONNREFUSED/,
  );
});
