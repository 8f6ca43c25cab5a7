// Geometry a parent or the scheduler chooses (no TLS: the loopback cluster):
// one message used to make a daemon reserve 16 GiB, and a parent
// advertising a longer piece turned a 2 MiB download into a 64 MiB file.
// Every answer is now bounded before anything is allocated, and the first
// answer is the task's: a parent that says otherwise is dropped.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { crc32Update, pieceLengthFor } from "../../src/common/pieces.js";
import { DownloadSchema, downloadTaskId, type schedulerv1 } from "../../src/protocol/index.js";
import { startOrigin, type Origin } from "../helpers/origin.js";
import { backToSource, normalTask, ScriptedScheduler, startPeer, taskFailed, type InProcPeer, type ParentLike } from "../helpers/inproc-peers.js";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

type Req = schedulerv1.AnnouncePeerRequest["request"];
type Plan = (req: Req) => schedulerv1.AnnouncePeerResponse | undefined;

const cleanups: Array<() => unknown> = [];
const suiteT = { after: (fn: () => unknown) => void cleanups.push(fn) };

// A parent that says `lines` on its sync stream (and keeps it open), and
// answers every piece request with `pieceBytes` zero bytes.
async function fakeParent(taskId: string, lines: object[], pieceBytes = 0): Promise<ParentLike & { pieceRequests: number }> {
  const state = { pieceRequests: 0 };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0]!;
    if (path === `/v1/tasks/${taskId}/sync`) {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      for (const l of lines) res.write(JSON.stringify(l) + "\n");
      return;
    }
    state.pieceRequests++;
    const body = Buffer.alloc(pieceBytes);
    res.writeHead(200, { "content-length": body.length, "x-damselfly-piece-crc32": String(crc32Update(body)) }).end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  suiteT.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as { port: number }).port;
  return Object.assign(state, { peerId: `fake-${port}`, hostId: `fake-host-${port}`, port });
}

describe("bogus geometry is refused before anything is allocated", () => {
  let origin: Origin;
  const plans = new Map<string, Plan>();
  const scheduler = new ScriptedScheduler((peer, _taskId, req) => plans.get(peer.name)?.(req));

  before(async () => {
    origin = await startOrigin();
  });

  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
    await origin.close();
  });

  test("16 GiB in one 16 GiB piece, from the scheduler and from a parent: ignored and dropped; no room made, nothing allocated", async () => {
    const size = 3 * MiB + 7;
    const data = origin.addRandomFile("/geo/big.bin", size, "big");
    const url = origin.url("/geo/big.bin");
    const id = downloadTaskId(create(DownloadSchema, { url }));
    const asked: number[] = [];
    const child: InProcPeer = await startPeer(suiteT, { name: "big-child", scheduler, makeRoom: async (_t, bytes) => void asked.push(bytes) });
    const liar = await fakeParent(id, [
      { type: "info", contentLength: 16 * GiB, pieceLength: 16 * GiB },
      { type: "pieces", pieces: [[0, 0, 16 * GiB]] },
    ]);
    plans.set("big-child", (req) => {
      if (req.case === "registerPeer") return normalTask([liar], { contentLength: 16 * GiB, pieceLength: 16 * GiB });
      return req.case === "reschedule" ? backToSource() : undefined;
    });
    const task = await child.download(url);
    assert.ok((await readFile(task.dataPath)).equals(data));
    assert.deepEqual(asked, [size], "room was asked for the origin's size only");
    assert.equal(task.meta.pieceLength, pieceLengthFor(size));
    assert.equal(statSync(task.dataPath).size, size);
    assert.equal(liar.pieceRequests, 0);
    assert.ok(
      scheduler.blocklists("big-child").some((b) => b.includes(liar.peerId)),
      "the parent was dropped and reported",
    );
  });

  test("a parent advertising a longer piece (or pieces past the end) than the task's is dropped; the 2 MiB file stays 2 MiB", async () => {
    const size = 2 * MiB;
    const pl = pieceLengthFor(size);
    const data = origin.addRandomFile("/geo/two.bin", size, "two");
    const url = origin.url("/geo/two.bin");
    const id = downloadTaskId(create(DownloadSchema, { url }));
    const honest = await startPeer(suiteT, { name: "two-honest", scheduler });
    plans.set("two-honest", (req) => (req.case === "registerPeer" ? backToSource() : undefined));
    await honest.download(url);
    const longer = await fakeParent(
      id,
      [
        { type: "info", contentLength: size, pieceLength: 64 * MiB },
        { type: "pieces", pieces: [[1, 0, 64 * MiB]] },
      ],
      64 * MiB,
    );
    const past = await fakeParent(id, [{ type: "pieces", pieces: [[1_000_000, 0, pl]] }], pl);
    const long = await fakeParent(id, [{ type: "pieces", pieces: [[2, 0, 64 * MiB]] }], 64 * MiB);
    const child = await startPeer(suiteT, { name: "two-child", scheduler });
    // The scheduler answers first, with the task's true size; the liars come
    // before the honest parent.
    plans.set("two-child", (req) => {
      if (req.case === "registerPeer") return normalTask([longer, past, long, honest.parent(id)], { contentLength: size, pieceLength: pl });
      return req.case === "reschedule" ? normalTask([honest.parent(id)]) : undefined;
    });
    const before = origin.requestCount("/geo/two.bin");
    const task = await child.download(create(DownloadSchema, { url, disableBackToSource: true }));
    assert.equal(statSync(task.dataPath).size, size, "the data file never grew");
    assert.ok((await readFile(task.dataPath)).equals(data));
    assert.equal(task.meta.pieceLength, pl);
    assert.equal(origin.requestCount("/geo/two.bin"), before);
    const blocked = scheduler.blocklists("two-child").flat();
    for (const p of [longer, past, long]) {
      assert.ok(blocked.includes(p.peerId), `${p.peerId} dropped`);
      assert.equal(p.pieceRequests, 0, `nothing asked of ${p.peerId}`);
    }
  });

  test("before the size is known, a piece past any allowed size is refused too", async () => {
    const url = origin.url("/geo/never.bin");
    const id = downloadTaskId(create(DownloadSchema, { url }));
    const far = await fakeParent(id, [
      { type: "info", contentLength: -1, pieceLength: 4 * MiB },
      { type: "pieces", pieces: [[2 ** 40, 0, 4 * MiB]] },
    ]);
    const child = await startPeer(suiteT, { name: "far-child", scheduler, maxContentLength: 64 * MiB });
    plans.set("far-child", (req) => {
      if (req.case === "registerPeer") return normalTask([far]);
      return req.case === "reschedule" ? taskFailed("no parent") : undefined;
    });
    await assert.rejects(child.download(create(DownloadSchema, { url, disableBackToSource: true })));
    assert.equal(far.pieceRequests, 0);
    assert.ok(scheduler.blocklists("far-child").some((b) => b.includes(far.peerId)));
    const task = child.storage.get(id);
    assert.ok(!task || statSync(task.dataPath, { throwIfNoEntry: false }) === undefined || statSync(task.dataPath).size === 0);
  });

  test("the origin's size is bounded by download.maxContentLength", async () => {
    const size = 3 * MiB;
    origin.addRandomFile("/geo/over.bin", size, "over");
    const url = origin.url("/geo/over.bin");
    const child = await startPeer(suiteT, { name: "over-child", maxContentLength: 2 * MiB });
    await assert.rejects(child.download(url), /DF_ERR_GEOMETRY_INVALID|content length/);
  });
});
