// The data plane against children that take its upload slots and never read:
// a response that makes no progress for upload.writeStallTimeout is cut and
// its slot goes to the next child; one address holds at most its share of
// the slots (upload.slotsPerAddress) and upload.connectionsPerAddress
// connections; a connection that sends no request is closed after
// upload.idleTimeout. Clients on 127.0.0.2 and 127.0.0.3 are other addresses
// (the whole of 127.0.0.0/8 is this host's).
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { taskId } from "../../src/common/task-id.js";
import { piecePath } from "../../src/protocol/index.js";
import { metric, scrape } from "../helpers/metrics.js";
import { startOrigin } from "../helpers/origin.js";
import { runGet, spawnDamselfly, type Cleanup } from "../helpers/procs.js";
import { sleep, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
// Pieces larger than what the kernel buffers of a connection hold, so a
// child that does not read stalls the response.
const PIECE = 32 * MiB;

interface Node {
  upload: number;
  metrics: string;
  id: string;
}

// A daemon without a scheduler holding one task of two 32 MiB pieces.
async function daemonWithTask(t: Cleanup, env: Record<string, string>, concurrency: number): Promise<Node> {
  const dir = tempDir(t, "df-upload-limits-");
  const origin = await startOrigin();
  t.after(() => origin.close());
  origin.addRandomFile("/big.bin", 2 * PIECE, "upload-limits");
  const socket = join(dir, "api.sock");
  const args = ["daemon", "--scheduler", "", "--data-dir", join(dir, "data"), "--listen", `unix:${socket}`, "--upload-listen", "127.0.0.1:0"];
  const proc = spawnDamselfly([...args, "--proxy-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--upload-concurrency", String(concurrency)], {
    t,
    env: Object.fromEntries(Object.entries(env).map(([k, v]) => [`DAMSELFLY_DAEMON_UPLOAD_${k}`, v])),
  });
  const ready = await proc.waitForLog("daemon ready", 20_000);
  const r = await runGet([origin.url("/big.bin"), "-O", join(dir, "out"), "--no-progress", "--piece-length", "32MiB", "--daemon", `unix:${socket}`], {
    timeoutMs: 60_000,
  });
  assert.equal(r.code, 0, r.stderr);
  return {
    upload: Number(String(ready.upload).split(":").pop()),
    metrics: String(ready.metrics),
    id: taskId({ url: origin.url("/big.bin"), pieceLength: PIECE }),
  };
}

// A child that asks for a piece and never reads the answer.
function staller(t: Cleanup, n: Node, localAddress: string): net.Socket {
  const s = net.connect({ host: "127.0.0.1", port: n.upload, localAddress });
  s.on("error", () => {});
  s.pause();
  s.write(`GET ${piecePath(n.id, 0)} HTTP/1.1\r\nhost: x\r\n\r\n`);
  t.after(() => s.destroy());
  return s;
}

const closed = (s: net.Socket) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once("close", () => resolve())));

// A child that reads: the status, the error code and the bytes of its answer.
function fetchPiece(n: Node, piece: number, localAddress: string): Promise<{ status: number; code: string | undefined; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port: n.upload, path: piecePath(n.id, piece), localAddress, agent: false }, (res) => {
      let bytes = 0;
      res.on("data", (c: Buffer) => (bytes += c.length));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, code: res.headers["x-damselfly-error"] as string | undefined, bytes }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}

async function gauge(n: Node, name: string): Promise<number> {
  return metric(await scrape(n.metrics), name);
}

async function untilGauge(n: Node, name: string, value: number): Promise<void> {
  for (let i = 0; i < 2_000 && (await gauge(n, name)) !== value; i++) await sleep(25);
  assert.equal(await gauge(n, name), value, name);
}

test("a child that stops reading loses its upload slot after the write stall timeout; the next child is served", { timeout: 120_000 }, async (t) => {
  const n = await daemonWithTask(t, { WRITE_STALL_TIMEOUT: "1s", SLOTS_PER_ADDRESS: "2" }, 2);
  const stuck = [staller(t, n, "127.0.0.2"), staller(t, n, "127.0.0.2")];
  await untilGauge(n, "damselfly_uploads_active", 2);
  const served = await fetchPiece(n, 1, "127.0.0.1");
  assert.deepEqual(served, { status: 200, code: undefined, bytes: PIECE }, "the next child gets the whole piece");
  assert.equal(await gauge(n, "damselfly_upload_stalled_total"), 2, "both stalled connections were cut");
  // Reading again, they find their connections closed before the piece's end.
  const got = await Promise.all(
    stuck.map(async (s) => {
      let bytes = 0;
      s.on("data", (d: Buffer) => (bytes += d.length));
      s.resume();
      await closed(s);
      return bytes;
    }),
  );
  for (const bytes of got) assert.ok(bytes < PIECE, `a cut response: ${bytes} bytes`);
});

test("one address holds at most its share of the slots and of the connections; an idle connection is closed", { timeout: 120_000 }, async (t) => {
  // Four slots, two per address; stalls are not cut within the test.
  const n = await daemonWithTask(t, { WRITE_STALL_TIMEOUT: "10m", CONNECTIONS_PER_ADDRESS: "4", IDLE_TIMEOUT: "1s" }, 4);
  const stuck = [1, 2, 3, 4].map(() => staller(t, n, "127.0.0.2"));
  await untilGauge(n, "damselfly_uploads_active", 2);
  // A fifth connection from the same address: closed before any answer.
  const fifth = net.connect({ host: "127.0.0.1", port: n.upload, localAddress: "127.0.0.2" });
  let answered = 0;
  fifth.on("data", (d: Buffer) => (answered += d.length));
  fifth.on("error", () => {});
  fifth.write(`GET ${piecePath(n.id, 1)} HTTP/1.1\r\nhost: x\r\n\r\n`);
  await closed(fifth);
  assert.equal(answered, 0, "the fifth connection got no answer");
  assert.equal(await gauge(n, "damselfly_upload_connections_refused_total"), 1);
  // Another address gets a slot at once, while 127.0.0.2's stalls go on.
  const served = await fetchPiece(n, 1, "127.0.0.1");
  assert.deepEqual(served, { status: 200, code: undefined, bytes: PIECE });
  assert.ok(
    stuck.every((s) => !s.destroyed),
    "the stalled connections are still open",
  );
  // A connection that never sends a request.
  const idle = net.connect({ host: "127.0.0.1", port: n.upload, localAddress: "127.0.0.3" });
  let idleAnswer = "";
  idle.on("data", (d: Buffer) => (idleAnswer += d.toString("latin1")));
  idle.on("error", () => {});
  await closed(idle);
  assert.match(idleAnswer, /^HTTP\/1\.1 408 /, "the idle connection is timed out");
});
