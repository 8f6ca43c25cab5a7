// Pieces checked against digests no serving peer can choose (mutual TLS on):
// the peer a scheduler sends to the origin with a grant signs the task's
// geometry and each piece's SHA-256; a child believes nothing else. Peers
// here are the daemon's own parts in this process (inproc-peers.ts) with a
// scripted scheduler, so the test decides who fetches and who is whose
// parent; the liars are HTTPS servers holding VALID peer certificates.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { crc32Update, pieceCount, pieceLengthFor } from "../../src/common/pieces.js";
import { DownloadSchema, downloadTaskId, formatPieceRecord, type schedulerv1 } from "../../src/protocol/index.js";
import { encodeRecord, sha256Hex, signBundle, signGrant, signPiece, type TrustBundle } from "../../src/protocol/trust.js";
import type { TlsIdentity } from "../../src/common/tls/identity.js";
import { makePki, type CertFiles, type Pki } from "../helpers/pki.js";
import { startOrigin, type Origin } from "../helpers/origin.js";
import {
  backToSource,
  grantFor,
  loadIdentity,
  normalTask,
  ScriptedScheduler,
  startPeer,
  taskFailed,
  type InProcPeer,
  type ParentLike,
} from "../helpers/inproc-peers.js";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB + 12_345;
const PL = pieceLengthFor(SIZE);
const PIECES = pieceCount(SIZE, PL);
const PATH = "/trusted/blob.bin";

type Req = schedulerv1.AnnouncePeerRequest["request"];
type Plan = (req: Req) => schedulerv1.AnnouncePeerResponse | undefined;

const suiteCleanup: Array<() => unknown> = [];
const suiteT = { after: (fn: () => unknown) => void suiteCleanup.push(fn) };

interface Liar {
  readonly parent: ParentLike;
  pieceRequests: number;
  close(): Promise<void>;
}

// A peer with a valid certificate that serves a task it does not hold
// honestly: `bundle` on its sync stream, every piece advertised with the
// CRC-32 of the bytes it sends (`bytes(n)`), and `record(n)` as the piece's
// digest record.
async function startLiar(files: CertFiles, taskId: string, o: { bundle: TrustBundle; bytes(n: number): Buffer; record(n: number): string }): Promise<Liar> {
  let pieceRequests = 0;
  const server = https.createServer(
    { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key), requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const path = (req.url ?? "").split("?")[0]!;
      if (path === `/v1/tasks/${taskId}/sync`) {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.write(JSON.stringify({ type: "bundle", record: JSON.stringify(o.bundle) }) + "\n");
        const pieces = Array.from({ length: PIECES }, (_, n) => [n, crc32Update(o.bytes(n)), o.bytes(n).length]);
        res.write(JSON.stringify({ type: "pieces", pieces }) + "\n");
        res.end(JSON.stringify({ type: "done" }) + "\n");
        return;
      }
      const m = /\/pieces\/(\d+)$/.exec(path);
      if (!m) {
        res.writeHead(404).end();
        return;
      }
      pieceRequests++;
      const body = o.bytes(Number(m[1]));
      res.writeHead(200, {
        "content-length": body.length,
        "x-damselfly-piece-crc32": String(crc32Update(body)),
        "x-damselfly-piece-digest": o.record(Number(m[1])),
      });
      res.end(body);
    },
  );
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const liar = {
    parent: { peerId: `liar-${port}`, hostId: `liar-host-${port}`, port },
    get pieceRequests() {
      return pieceRequests;
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
    },
  };
  return liar as Liar;
}

describe("trusted piece digests (mutual TLS)", () => {
  let dir: string;
  let pki: Pki;
  let origin: Origin;
  let data: Buffer;
  let url: string;
  let id: string;
  let sched: TlsIdentity;
  const plans = new Map<string, Plan>();
  const scheduler = new ScriptedScheduler((peer, _taskId, req) => plans.get(peer.name)?.(req));
  // The seed peer the scheduler sent to the origin, with a grant.
  let fetcher: InProcPeer;
  let originRequests: number;

  const peer = async (name: string, role: "peer" | "seed-peer" = "peer", dataDir?: string): Promise<InProcPeer> =>
    startPeer(suiteT, { name, tls: loadIdentity(await pki.issue(role, name)), scheduler, ...(dataDir ? { dataDir } : {}) });
  const realPiece = (n: number) => data.subarray(n * PL, Math.min(SIZE, (n + 1) * PL));
  // Different bytes of the same length.
  const wrongPiece = (n: number) => Buffer.from(realPiece(n).map((b) => b ^ 0x5a));
  const sentBy = (name: string, kind: Req["case"]) => scheduler.sent.filter((s) => s.peer === name && s.req.case === kind);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "df-trusted-"));
    pki = await makePki(dir);
    sched = loadIdentity(await pki.issue("scheduler", "sched"));
    origin = await startOrigin();
    data = origin.addRandomFile(PATH, SIZE, "trusted");
    url = origin.url(PATH);
    id = downloadTaskId(create(DownloadSchema, { url }));
    fetcher = await peer("fetcher", "seed-peer");
    plans.set("fetcher", (req) => (req.case === "registerPeer" ? backToSource(grantFor(sched, fetcher, id)) : undefined));
    const task = await fetcher.download(url);
    assert.ok(task.trusted, "the granted fetcher signed its geometry and every piece");
    assert.equal(task.bundles.size, 1);
    originRequests = origin.requestCount(PATH);
  });

  after(async () => {
    for (const fn of suiteCleanup.reverse()) await fn();
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // A child first given the liar as its only parent (and, by the scheduler,
  // a task size that is not the task's: with TLS it is never believed), then
  // on its reschedule the honest fetcher.
  async function childOf(name: string, liar: Liar): Promise<{ child: InProcPeer; bytes: Buffer }> {
    const child = await peer(name);
    plans.set(name, (req) => {
      if (req.case === "registerPeer") return normalTask([liar.parent], { contentLength: 64 * MiB, pieceLength: 64 * MiB });
      if (req.case === "reschedule") return normalTask([fetcher.parent(id)]);
      return undefined;
    });
    const task = await child.download(create(DownloadSchema, { url, disableBackToSource: true }));
    return { child, bytes: readFileSync(task.dataPath) };
  }

  test("a liar with a valid peer certificate relays the real bundle and digests but sends other bytes with matching CRC-32s: caught, blocklisted, reported", async () => {
    const held = fetcher.storage.get(id)!;
    const liar = await startLiar(await pki.issue("peer", "liar-bytes"), id, {
      bundle: held.bundles.all[0]!,
      bytes: wrongPiece,
      record: (n) => formatPieceRecord(held.pieces.get(n)!.trust!),
    });
    suiteT.after(() => liar.close());
    const { child, bytes } = await childOf("child-a", liar);
    assert.ok(bytes.equals(data), "the child has the origin's bytes");
    assert.equal(bytes.length, SIZE, "the scheduler's task size was not believed");
    assert.ok(liar.pieceRequests >= 1, "the liar was asked for pieces (and its bytes refused)");
    assert.ok(
      scheduler.blocklists("child-a").some((b) => b.includes(liar.parent.peerId)),
      "the liar is on the blocklist sent to the scheduler",
    );
    const failed = sentBy("child-a", "pieceFailed").map((s) => s.req.value as schedulerv1.PieceFailedRequest);
    assert.ok(
      failed.some((f) => f.parentId === liar.parent.peerId),
      "the bad piece was reported, naming the liar",
    );
    assert.equal(origin.requestCount(PATH), originRequests, "the origin was not asked again");
    assert.ok(child.storage.get(id)!.trusted, "every stored piece carries the fetcher's record, to relay");
  });

  test("a liar that signs its own bundle (a grant it made itself) and its own digests: its bundle is refused before any piece is asked of it", async () => {
    const files = await pki.issue("peer", "liar-self");
    const me = loadIdentity(files).current();
    const grant = signGrant(me, id, "liar", me.leaf.fingerprint256);
    const liar = await startLiar(files, id, {
      bundle: signBundle(me, grant, SIZE, PL),
      bytes: wrongPiece,
      record: (n) =>
        formatPieceRecord({
          sha256: sha256Hex(wrongPiece(n)),
          fetcher: me.leaf.fingerprint256,
          sig: signPiece(me, id, n, realPiece(n).length, sha256Hex(wrongPiece(n))).sig,
        }),
    });
    suiteT.after(() => liar.close());
    const { bytes } = await childOf("child-b", liar);
    assert.ok(bytes.equals(data));
    assert.equal(liar.pieceRequests, 0);
    assert.ok(scheduler.blocklists("child-b").some((b) => b.includes(liar.parent.peerId)));
  });

  test("a liar that relays the real bundle with digests signed by its own key: every record is refused", async () => {
    const files = await pki.issue("peer", "liar-records");
    const me = loadIdentity(files).current();
    const real = fetcher.storage.get(id)!.bundles.all[0]!;
    const liar = await startLiar(files, id, {
      bundle: real,
      bytes: wrongPiece,
      // Claims the fetcher signed it.
      record: (n) =>
        formatPieceRecord({
          sha256: sha256Hex(wrongPiece(n)),
          fetcher: real.grant.fetcher,
          sig: signPiece(me, id, n, realPiece(n).length, sha256Hex(wrongPiece(n))).sig,
        }),
    });
    suiteT.after(() => liar.close());
    const { bytes } = await childOf("child-c", liar);
    assert.ok(bytes.equals(data));
    assert.ok(liar.pieceRequests >= 1);
    assert.ok(scheduler.blocklists("child-c").some((b) => b.includes(liar.parent.peerId)));
  });

  test("piece digests survive a restart and are relayed by a holder that never fetched to a third peer, the fetcher gone", async () => {
    const holder = await peer("holder");
    plans.set("holder", (req) => (req.case === "registerPeer" ? normalTask([fetcher.parent(id)]) : undefined));
    await holder.download(url);
    // The holder restarts on its data; the fetcher is gone for good.
    await holder.close();
    const again = await peer("holder-again", "peer", holder.dataDir);
    const kept = again.storage.get(id)!;
    assert.ok(kept.done && kept.trusted, "bundle and piece digests were kept on disk");
    assert.ok(again.tasks.announceable(kept), "announced as cached after the restart");
    const third = await peer("third");
    plans.set("third", (req) => (req.case === "registerPeer" || req.case === "reschedule" ? normalTask([again.parent(id)]) : undefined));
    const before = origin.requestCount(PATH);
    const task = await third.download(create(DownloadSchema, { url, disableBackToSource: true }));
    assert.ok(readFileSync(task.dataPath).equals(data));
    assert.equal(origin.requestCount(PATH), before);
    assert.ok(task.trusted);
    assert.deepEqual(
      task.bundles.all.map((b) => b.grant.fetcher),
      [fetcher.tls!.current().leaf.fingerprint256],
      "the digests are still the fetcher's, not the relaying holder's",
    );
  });

  test("a task fetched without a grant is never handed on nor announced", async () => {
    const path = "/trusted/no-grant.bin";
    const d = origin.addRandomFile(path, 2 * MiB, "no-grant");
    const u = origin.url(path);
    const tid = downloadTaskId(create(DownloadSchema, { url: u }));
    const lone = await peer("lone");
    plans.set("lone", (req) => (req.case === "registerPeer" ? backToSource() : undefined));
    const task = await lone.download(u);
    assert.ok(readFileSync(task.dataPath).equals(d));
    assert.ok(!task.trusted);
    assert.ok(!lone.tasks.announceable(task));
    const asker = await peer("asker");
    plans.set("asker", (req) => {
      if (req.case === "registerPeer") return normalTask([lone.parent(tid)]);
      return req.case === "reschedule" ? taskFailed("no parent left") : undefined;
    });
    await assert.rejects(asker.download(create(DownloadSchema, { url: u, disableBackToSource: true })), /DF_ERR_NO_PARENT|no parent/);
    assert.ok(
      scheduler.blocklists("asker").some((b) => b.includes(lone.parent(tid).peerId)),
      "the holder without a bundle answered 404",
    );
    assert.equal(lone.upload.stats.pieces, 0);
  });

  test("a grant that names another certificate is not used: the task is fetched but not handed on", async () => {
    const path = "/trusted/wrong-grant.bin";
    origin.addRandomFile(path, 1 * MiB, "wrong-grant");
    const u = origin.url(path);
    const tid = downloadTaskId(create(DownloadSchema, { url: u }));
    const p = await peer("misgranted");
    plans.set("misgranted", (req) =>
      req.case === "registerPeer" ? backToSource(encodeRecord(signGrant(sched.current(), tid, "x", fetcher.tls!.current().leaf.fingerprint256))) : undefined,
    );
    const task = await p.download(u);
    assert.equal(task.bundles.size, 0);
    assert.ok(!task.trusted);
  });
});
