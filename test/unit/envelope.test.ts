import { test, after } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { encodeEnvelope, EnvelopeReader, EnvelopeTooLargeError, type EnvelopeSink } from "../../src/protocol/envelope.js";
import { Scheduler } from "../../src/scheduler/index.js";

// The one length-prefixed framing (protocol/envelope.ts) reads what strangers
// send to the scheduler's gRPC fast path: a length prefix is a claim, never a
// reason to buffer.

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function collector(): EnvelopeSink & { got: Array<[number, string]> } {
  const got: Array<[number, string]> = [];
  return { got, envelope: (flags, message) => void got.push([flags, message.toString("utf8")]) };
}

test("envelopes split at every byte come out whole and in order", () => {
  const wire = Buffer.concat([encodeEnvelope(Buffer.from("first")), encodeEnvelope(Buffer.from(""), 2), encodeEnvelope(Buffer.from("third message"))]);
  for (let cut = 0; cut <= wire.length; cut++) {
    const reader = new EnvelopeReader(1024);
    const sink = collector();
    reader.push(wire.subarray(0, cut), sink);
    reader.push(wire.subarray(cut), sink);
    assert.deepEqual(
      sink.got,
      [
        [0, "first"],
        [2, ""],
        [0, "third message"],
      ],
      `cut at ${cut}`,
    );
    assert.equal(reader.partial, false);
  }
});

test("a length over the limit is refused at the 5-byte head, before any of its body arrives", () => {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(400 * 1024 * 1024, 1);
  const reader = new EnvelopeReader(4 * 1024 * 1024);
  const sink = collector();
  // The head itself split over two reads.
  reader.push(head.subarray(0, 3), sink);
  assert.throws(
    () => reader.push(head.subarray(3), sink),
    (e: unknown) => e instanceof EnvelopeTooLargeError && e.bytes === 400 * 1024 * 1024,
  );
  assert.deepEqual(sink.got, []);
  // Exactly at the limit is fine.
  const ok = new EnvelopeReader(8);
  ok.push(encodeEnvelope(Buffer.from("12345678")), sink);
  assert.deepEqual(sink.got, [[0, "12345678"]]);
});

test("the scheduler answers a stranger's 400 MiB length prefix with RESOURCE_EXHAUSTED and keeps serving", { timeout: 15_000 }, async () => {
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0" } });
  const sched = new Scheduler({ config, logger: createLogger("silent") });
  await sched.start();
  cleanups.push(() => sched.close());
  const session = http2.connect(`http://127.0.0.1:${sched.address.port}`);
  cleanups.push(() => void session.destroy());
  const call = () =>
    session.request({
      ":method": "POST",
      ":path": "/damselfly.scheduler.v1.SchedulerService/AnnouncePeer",
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
  const status = (req: http2.ClientHttp2Stream) =>
    new Promise<string | undefined>((resolve, reject) => {
      // The answer may come as trailers-only headers or as trailers; the
      // stream's own end is not awaited (our side may still be open).
      const seen = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) resolve(String(h["grpc-status"]));
      };
      req.on("response", seen);
      req.on("trailers", seen);
      req.on("error", reject);
      req.on("close", () => resolve(undefined));
      req.resume();
    });
  // Only the head: a server that waited for 400 MiB would never answer.
  const head = Buffer.alloc(5);
  head.writeUInt32BE(400 * 1024 * 1024, 1);
  const big = call();
  const bigStatus = status(big);
  big.write(head);
  assert.equal(await bigStatus, "8", "RESOURCE_EXHAUSTED");
  big.close();
  // The same connection still gets answers: an empty stream ends cleanly.
  const next = call();
  const nextStatus = status(next);
  next.end();
  assert.notEqual(await nextStatus, undefined);
});
