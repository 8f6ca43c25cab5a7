// The piece data plane's HTTP/1.1 client on real sockets (127.0.0.1): bodies
// arrive byte-exact across keep-alive reuse, error answers keep the
// connection usable, and broken or hostile parents fail the request with a
// clear error instead of hanging or handing on bad bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { once } from "node:events";
import { PieceClient, type PieceRequest } from "../../src/peer/download/piece-client.js";

interface Result {
  status: number;
  length: number;
  body: Buffer;
  error?: Error;
}

function fetch(client: PieceClient, path: string, onReq?: (r: PieceRequest) => void, onChunk?: () => void): Promise<Result> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let status = 0;
    let length = 0;
    const r = client.get(path, {
      onStart: (s, l) => {
        status = s;
        length = l;
      },
      // The chunk is a view into a reused buffer: copy it.
      onData: (c) => {
        parts.push(Buffer.from(c));
        onChunk?.();
      },
      onEnd: () => resolve({ status, length, body: Buffer.concat(parts) }),
      onError: (error) => resolve({ status, length, body: Buffer.concat(parts), error }),
    });
    onReq?.(r);
  });
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as net.AddressInfo).port;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("pieces arrive byte-exact over reused keep-alive connections, written in many small writes", async (t) => {
  const data = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  let connections = 0;
  const server = http.createServer((req, res) => {
    if (req.url === "/missing") {
      const body = '{"code":"DF_ERR_PIECE_NOT_FOUND"}\n';
      res.writeHead(404, { "content-type": "application/json", "content-length": String(body.length) }).end(body);
      return;
    }
    if (req.url === "/chunked-error") {
      res.writeHead(500, { "content-type": "application/json" }).end('{"code":"DF_ERR_INTERNAL"}\n');
      return;
    }
    res.writeHead(200, { "content-length": String(data.length) });
    // Uneven writes so heads and bodies split across reads in every way.
    let at = 0;
    const step = () => {
      while (at < data.length) {
        const n = Math.min(1 + ((at * 7919) % 70_000), data.length - at);
        const ok = res.write(data.subarray(at, at + n));
        at += n;
        if (!ok) return void res.once("drain", step);
      }
      res.end();
    };
    step();
  });
  server.on("connection", () => connections++);
  const port = await listen(server);
  const client = new PieceClient("127.0.0.1", port, { maxConnections: 2, connectTimeoutMs: 2_000, idleTimeoutMs: 5_000 });
  t.after(() => {
    client.close();
    server.close();
  });
  const results = await Promise.all([0, 1, 2, 3, 4, 5].map(() => fetch(client, "/p")));
  for (const r of results) {
    assert.equal(r.error, undefined);
    assert.equal(r.status, 200);
    assert.equal(r.length, data.length);
    assert.equal(sha(r.body), sha(data));
  }
  // A 404 with a body leaves the connection usable.
  const missing = await fetch(client, "/missing");
  assert.equal(missing.status, 404);
  assert.match(missing.body.toString(), /DF_ERR_PIECE_NOT_FOUND/);
  const again = await fetch(client, "/p");
  assert.equal(sha(again.body), sha(data));
  assert.equal(connections, 2, "six pieces, an error and one more piece over the 2 allowed connections");
  // An error without a length: the status is known, the connection is not reused.
  const chunked = await fetch(client, "/chunked-error");
  assert.equal(chunked.error, undefined);
  assert.equal(chunked.status, 500);
  const two = await Promise.all([fetch(client, "/p"), fetch(client, "/p")]);
  for (const r of two) assert.equal(sha(r.body), sha(data));
  assert.equal(connections, 3, "the connection that carried the unbounded error was replaced");
});

test("a parent that closed an idle connection costs nothing: the request goes again on a fresh one", async (t) => {
  const server = http.createServer({ keepAliveTimeout: 100 }, (_req, res) => res.writeHead(200, { "content-length": "5" }).end("hello"));
  const port = await listen(server);
  const client = new PieceClient("127.0.0.1", port, { maxConnections: 1, connectTimeoutMs: 2_000, idleTimeoutMs: 5_000 });
  t.after(() => {
    client.close();
    server.close();
  });
  // The parent's side of the idle connection closed (keepAliveTimeout): the
  // next request must not fail on it.
  const idleClosed = new Promise<void>((resolve) => server.once("connection", (sock) => sock.once("close", () => resolve())));
  assert.equal((await fetch(client, "/p")).body.toString(), "hello");
  await idleClosed;
  const r = await fetch(client, "/p");
  assert.equal(r.error, undefined);
  assert.equal(r.body.toString(), "hello");
});

test("broken parents: too many bytes, a cut-off body, garbage, silence, and an abort all fail cleanly", async (t) => {
  const server = net.createServer((sock) => {
    sock.once("data", (req) => {
      const path = /GET (\S+)/.exec(req.toString())![1];
      if (path === "/extra") sock.write("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcdEXTRA");
      else if (path === "/short") sock.end("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
      else if (path === "/garbage") sock.write("SMTP ready\r\n\r\n");
      else if (path === "/chunked") sock.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
      else if (path === "/huge-head") sock.write("HTTP/1.1 200 OK\r\n" + "x-pad: " + "a".repeat(20_000));
      else if (path === "/slow") sock.write("HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nab");
      // "/silent": nothing at all
    });
    sock.on("error", () => undefined);
  });
  const port = await listen(server);
  // The connect timeout is far off: a silent parent can only be ended by
  // the idle timeout.
  const client = new PieceClient("127.0.0.1", port, { maxConnections: 4, connectTimeoutMs: 60_000, idleTimeoutMs: 300 });
  t.after(() => {
    client.close();
    server.close();
  });
  assert.match((await fetch(client, "/extra")).error?.message ?? "", /more than the response's length/);
  assert.match((await fetch(client, "/short")).error?.message ?? "", /closed the connection/);
  assert.match((await fetch(client, "/garbage")).error?.message ?? "", /malformed HTTP response/);
  assert.match((await fetch(client, "/chunked")).error?.message ?? "", /without a content length/);
  assert.match((await fetch(client, "/huge-head")).error?.message ?? "", /head is too long/);
  const started = Date.now();
  assert.match((await fetch(client, "/silent")).error?.message ?? "", /sent nothing in time/);
  assert.ok(Date.now() - started < 30_000, "the idle timeout, not the 60 s connect timeout, ended it");
  // Aborted once the first bytes arrived (not after a sleep they might outlast).
  let slow: PieceRequest | undefined;
  const aborted = await fetch(
    client,
    "/slow",
    (r) => (slow = r),
    () => setImmediate(() => slow?.abort(new Error("endgame: not needed"))),
  );
  assert.equal(aborted.error?.message, "endgame: not needed");
  assert.equal(aborted.body.toString(), "ab");
});

test("a closed client fails queued and new requests at once", async () => {
  const client = new PieceClient("127.0.0.1", 9, { maxConnections: 1, connectTimeoutMs: 2_000, idleTimeoutMs: 5_000 });
  const pending = fetch(client, "/p");
  client.close();
  assert.match((await pending).error?.message ?? "", /closed/);
  assert.match((await fetch(client, "/p")).error?.message ?? "", /closed/);
});

test("a request paused by a rate limit (untimed) outlives the idle timeout; a timed pause does not", async (t) => {
  const data = Buffer.alloc(4 * 1024 * 1024, 7);
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-length": String(data.length) }).end(data);
  });
  const port = await listen(server);
  t.after(() => server.close());
  // Holds the request for twice the idle timeout after its first read.
  const run = (untimed: boolean) => {
    const client = new PieceClient("127.0.0.1", port, { maxConnections: 1, connectTimeoutMs: 2_000, idleTimeoutMs: 150 });
    t.after(() => client.close());
    return new Promise<{ body: Buffer; error?: Error }>((resolve) => {
      const parts: Buffer[] = [];
      const req: PieceRequest = client.get("/p", {
        onStart: () => undefined,
        onData: (c) => {
          parts.push(Buffer.from(c));
          if (parts.length > 1) return;
          req.pause(untimed);
          setTimeout(() => req.resume(), 300);
        },
        onEnd: () => resolve({ body: Buffer.concat(parts) }),
        onError: (error) => resolve({ body: Buffer.concat(parts), error }),
      });
    });
  };
  const held = await run(true);
  assert.equal(held.error, undefined, `untimed pause: ${held.error?.message}`);
  assert.equal(sha(held.body), sha(data));
  const timed = await run(false);
  assert.ok(timed.error, "a timed pause longer than the idle timeout fails the request");
});
