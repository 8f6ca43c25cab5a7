// One real scheduler process under thousands of simulated peers, all over
// real gRPC streams on loopback: registrations/s, decisions/s, decision
// latency, the scheduler's memory per peer and CPU, and whether it was
// CPU-bound.
//   node dist/bench/scheduler-scale.js [--peers 10000] [--tasks 100] [--hosts 1000] [--pieces 20]
//       [--rate 5000] [--piece-ms 300] [--duration 60] [--fail-rate 0.02] [--reschedule 0.05]
//       [--client h2|connect] [--workers 1] [--sessions 0] [--inflight 256] [--log-level info]
//       [--reports batched|per-piece] [--batch-ms 500] [--batch-max 64]
//       [--warmup 0] [--probe-rate 0] [--nice-load 0] [--load-cpus LIST] [--timeline] [--cpu-prof DIR] [--scheduler-args '--retry-limit 4'] [--scheduler-node-args
//       '--max-semi-space-size=64'] [--client-node-args '--cpu-prof --cpu-prof-dir DIR'] [--keep DIR]
//
// The scheduler is `bin/damselfly scheduler --listen 127.0.0.1:PORT` in its own
// process, preloaded with bench/scheduler-probe.js (loop utilisation/delay
// ticks, and a full GC plus a memory reading on SIGUSR2; nothing else).
// The simulated daemons live in --workers client processes (forks of this
// script); each simulated host has its own HTTP/2 session, as a real daemon
// does (--sessions N spreads the hosts over N sessions instead). --client h2
// (default) speaks gRPC over node:http2 directly and encodes its requests and
// reads the answers by hand (src/protocol/fast/announce-peer-client.ts: the
// same bytes as protobuf-es, checked by its unit test), well under a third of the CPU of
// --client connect (Connect's gRPC transport, what the daemon uses): the
// client shares the machine's cores with the scheduler.
//
// Each host is announced first (and re-announced every 10 s, like a daemon).
// Peers arrive open-loop at --rate registrations/s (0: as fast as the
// scheduler answers, with --inflight registrations awaiting their first
// answer). Peer i belongs to task i % tasks; a task's peers sit on distinct
// hosts. A peer opens an AnnouncePeer stream, registers, and acts on what it
// is told, as the daemon does: normal_task -> download_peer_started, then
// piece_finished every ~--piece-ms from its candidates in turn (a fraction
// --fail-rate of piece reports are non-temporary piece_failed instead, so
// parents get blocklisted); need_back_to_source -> back_to_source_started and
// pieces from the origin. A fraction --reschedule of P2P peers reschedule
// halfway, blocklisting a parent. After --pieces pieces: peer_finished (or
// back_to_source_finished) and the stream is half-closed. Piece reports go
// through the daemon's own PieceReportBatcher (--reports batched, the
// default: its window and size unless --batch-ms / --batch-max say
// otherwise), or one message per piece as older daemons send them
// (--reports per-piece). Finished peers stay
// in the scheduler as parents, so the memory after the run is what 10,000
// held peers cost.
//
// --warmup N first runs N peers of other tasks (peer ids "w-p<i>") through
// the same scheduler at the same rate, unmeasured, so the load phase meets a
// warm scheduler (JIT-compiled hot paths) as a long-running one is; the
// memory baseline is then taken after the warm-up. Off by default.
//
// Latency is measured by the client (register -> first response; reschedule
// -> next response), so it includes the client's own event-loop delay: the
// client's CPU and loop delay are printed alongside, and so is the CPU that
// other processes on the machine took. --probe-rate R adds a latency probe:
// one more client process registering R peers/s of its own tasks on its own
// hosts over the registration window, its loop nearly idle, so its figures
// are the scheduler's answer time as a daemon elsewhere would see it (its
// peers count in no throughput figure). Everything is bounded by --duration;
// the scheduler and workers are stopped at the end (--keep DIR keeps the
// scheduler's log, stdout and probe readings).
import { execFileSync, fork, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { availableParallelism, setPriority, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { usableCores } from "../src/cli/v8-pool.js";
import { AsyncQueue } from "../src/common/async-queue.js";
import { PIECE_BATCH_DEFAULTS, PieceReportBatcher, type PieceBatchOptions } from "../src/peer/download/piece-report-batcher.js";
import { createRpcTransport, HostType, schedulerv1 } from "../src/protocol/index.js";
import { encodeEnvelope, EnvelopeReader } from "../src/protocol/envelope.js";
import {
  answerOf,
  encodeAnnouncePeerHead,
  encodeAnnouncePeerRequest,
  peekAnnouncePeerResponse,
  type Answer,
} from "../src/protocol/fast/announce-peer-client.js";
import { BIN, ROOT, cpuSeconds, opt, schedulerV8PoolArgs } from "./lib.js";

const SELF = fileURLToPath(import.meta.url);
const PIECE_LENGTH = 4 * 1024 * 1024;
const ANNOUNCE_INTERVAL_S = 10;
// A P2P peer left without a usable parent asks again after this long (the
// daemon's scheduleTimeout is 10 s; shorter here so a bounded run sees it).
const STALL_RESCHEDULE_MS = 3_000;
const TICK_MS = 2;
// Setup (announcing the hosts), memory probes and shutdown on top of --duration.
const WATCHDOG_SLACK_S = 120;

interface Opts {
  peers: number;
  tasks: number;
  hosts: number;
  pieces: number;
  rate: number;
  inflight: number;
  pieceMs: number;
  durationS: number;
  workers: number;
  sessions: number;
  failRate: number;
  reschedule: number;
  client: "h2" | "connect";
  // Piece reports: false = one message per piece.
  batch: PieceBatchOptions | false;
  runTag: string;
  // Peers of the unmeasured warm-up phase (0: none).
  warmup: number;
  // Registrations/s of the latency probe (0: no probe).
  probeRate: number;
}

type SchedClient = Client<typeof schedulerv1.SchedulerService>;
type Req = schedulerv1.AnnouncePeerRequest["request"];

// What a worker reports at the end.
interface WorkerResult {
  peers: number;
  regSent: number;
  regAnswered: number;
  firstRegAt: number;
  lastRegAt: number;
  // When the last registration got its first answer (ms since t0).
  lastRegAnsweredAt: number;
  // When each response arrived (ms since t0).
  respAt: number[];
  regLat: number[];
  // The second (since t0) each regLat entry's registration was sent in.
  regSentSec: number[];
  // When each regLat entry's registration was sent (ms since t0), for
  // lining slow answers up with the scheduler's GC events (--keep).
  regSentMs: number[];
  // This client's own GC pauses (wall clock start, ms), for the same.
  gcPauses: { at: number; ms: number }[];
  reschedLat: number[];
  reschedSent: number;
  responses: Record<string, number>;
  requests: Record<string, number>;
  outcomes: Record<string, number>;
  errors: Record<string, number>;
  // Per second since t0.
  secRegs: number[];
  secResps: number[];
  secReqs: number[];
  doneAt: number;
  cpuS: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  hostAnnounces: number;
}

type ToWorker =
  | { type: "init"; opts: Opts; addr: string; index: number; probe?: boolean }
  | { type: "warmup"; t0: number }
  | { type: "go"; t0: number }
  | { type: "exit" };
type FromWorker = { type: "hosts" } | { type: "warm" } | { type: "done"; result: WorkerResult } | { type: "error"; message: string };

const taskIdOf = (opts: Opts, t: number) => createHash("sha256").update(`scheduler-scale-${opts.runTag}-${t}`).digest("hex");
const hostOf = (opts: Opts, i: number) => {
  const t = i % opts.tasks;
  const j = Math.floor(i / opts.tasks);
  const stride = Math.max(1, Math.floor(opts.hosts / opts.tasks));
  return (j + t * stride) % opts.hosts;
};

const ipOf = (h: number) => `10.${(h >> 16) & 255}.${(h >> 8) & 255}.${h & 255}`;

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function bump(m: Record<string, number>, k: string, n = 1): void {
  m[k] = (m[k] ?? 0) + n;
}

function bumpSec(a: number[], sec: number): void {
  if (sec < 0) sec = 0;
  while (a.length <= sec) a.push(0);
  a[sec]!++;
}

// ---------------------------------------------------------------- links

// One simulated daemon's connection to the scheduler: unary AnnounceHost and
// AnnouncePeer streams. Two implementations: Connect's gRPC transport (what
// the daemon uses), and a lean one that speaks the same gRPC wire format over
// node:http2 directly, so the client spends less of the shared CPU.
interface PeerStream {
  send(request: Req): void;
  // Half-close: no more requests.
  end(): void;
  abort(): void;
}
type OnResponse = (a: Answer) => void;
// The fields every request of a stream carries.
interface StreamHead {
  hostId: string;
  taskId: string;
  peerId: string;
}
// err undefined: the scheduler ended the stream with status OK.
type OnEnd = (err: string | undefined) => void;

interface Link {
  announceHost(req: schedulerv1.AnnounceHostRequest): Promise<void>;
  openPeer(head: StreamHead, onResponse: OnResponse, onEnd: OnEnd): PeerStream;
  close(): void;
}

class ConnectLink implements Link {
  private readonly client: SchedClient;

  constructor(addr: string) {
    this.client = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${addr}`));
  }

  async announceHost(req: schedulerv1.AnnounceHostRequest): Promise<void> {
    await this.client.announceHost(req);
  }

  openPeer(head: StreamHead, onResponse: OnResponse, onEnd: OnEnd): PeerStream {
    const reqs = new AsyncQueue<schedulerv1.AnnouncePeerRequest>();
    const ctrl = new AbortController();
    // Connect clients need a request iterable with throw(): an async generator.
    const source = (async function* () {
      yield* reqs;
    })();
    const responses = this.client.announcePeer(source, { signal: ctrl.signal });
    void (async () => {
      try {
        for await (const r of responses) onResponse(answerOf(r));
        onEnd(undefined);
      } catch (err) {
        onEnd(ctrl.signal.aborted ? "aborted" : (err as Error).message);
      }
    })();
    return {
      send: (request) => reqs.push(create(schedulerv1.AnnouncePeerRequestSchema, { ...head, request })),
      end: () => reqs.close(),
      abort: () => {
        reqs.close();
        ctrl.abort();
      },
    };
  }

  close(): void {
    /* sessions close when idle */
  }
}

const SERVICE_PATH = "/damselfly.scheduler.v1.SchedulerService";
// Answers are a few hundred bytes; the scheduler's own limit.
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

function grpcStatus(headers: http2.IncomingHttpHeaders): string | undefined {
  const st = headers["grpc-status"];
  if (st === undefined) return undefined;
  if (st === "0") return "";
  const msg = headers["grpc-message"];
  return `grpc-status ${String(st)}: ${decodeURIComponent(String(msg ?? ""))}`;
}

class H2Link implements Link {
  private session: http2.ClientHttp2Session | undefined;

  constructor(private readonly addr: string) {}

  private get s(): http2.ClientHttp2Session {
    if (!this.session || this.session.closed || this.session.destroyed) {
      const s = http2.connect(`http://${this.addr}`);
      s.on("error", () => undefined);
      this.session = s;
    }
    return this.session;
  }

  private request(method: string, endStream: boolean): http2.ClientHttp2Stream {
    return this.s.request({ ":method": "POST", ":path": `${SERVICE_PATH}/${method}`, "content-type": "application/grpc+proto", te: "trailers" }, { endStream });
  }

  announceHost(req: schedulerv1.AnnounceHostRequest): Promise<void> {
    return new Promise((resolveCall, reject) => {
      const st = this.request("AnnounceHost", false);
      let status: string | undefined;
      st.on("response", (h) => (status = grpcStatus(h) ?? status));
      st.on("trailers", (h) => (status = grpcStatus(h) ?? status));
      st.on("data", () => undefined);
      st.on("error", (e) => reject(e));
      st.on("close", () => (status === "" ? resolveCall() : reject(new Error(status ?? `stream closed (rst ${st.rstCode})`))));
      st.end(encodeEnvelope(toBinary(schedulerv1.AnnounceHostRequestSchema, req)));
    });
  }

  openPeer(head: StreamHead, onResponse: OnResponse, onEnd: OnEnd): PeerStream {
    const st = this.request("AnnouncePeer", false);
    const headBytes = encodeAnnouncePeerHead(head.hostId, head.taskId, head.peerId);
    const reader = new EnvelopeReader(MAX_ANSWER_BYTES);
    const answers = { envelope: (_flags: number, bytes: Buffer) => onResponse(peekAnnouncePeerResponse(bytes)) };
    let status: string | undefined;
    let aborted = false;
    st.on("response", (h) => (status = grpcStatus(h) ?? status));
    st.on("trailers", (h) => (status = grpcStatus(h) ?? status));
    st.on("data", (chunk: Buffer) => reader.push(chunk, answers));
    st.on("error", () => undefined);
    st.on("close", () => onEnd(aborted ? "aborted" : status === "" ? undefined : (status ?? `stream closed (rst ${st.rstCode})`)));
    return {
      send: (request) => {
        if (!st.writableEnded && !st.destroyed) st.write(encodeEnvelope(encodeAnnouncePeerRequest(headBytes, request)));
      },
      end: () => {
        if (!st.writableEnded && !st.destroyed) st.end();
      },
      abort: () => {
        aborted = true;
        if (!st.destroyed) st.close(http2.constants.NGHTTP2_CANCEL);
      },
    };
  }

  close(): void {
    this.session?.close();
  }
}

// ---------------------------------------------------------------- worker

class Worker {
  readonly stats: WorkerResult = {
    peers: 0,
    regSent: 0,
    regAnswered: 0,
    firstRegAt: Infinity,
    lastRegAt: 0,
    lastRegAnsweredAt: 0,
    respAt: [],
    regLat: [],
    regSentSec: [],
    regSentMs: [],
    gcPauses: [],
    reschedLat: [],
    reschedSent: 0,
    responses: {},
    requests: {},
    outcomes: {},
    errors: {},
    secRegs: [],
    secResps: [],
    secReqs: [],
    doneAt: 0,
    cpuS: 0,
    loopDelayP99Ms: 0,
    loopDelayMaxMs: 0,
    hostAnnounces: 0,
  };
  readonly links: Link[] = [];
  readonly hostLink = new Map<number, Link>();
  readonly hosts: number[] = [];
  readonly peers: SimPeer[] = [];
  t0 = 0;
  t0Perf = 0;
  private wheel = new Map<number, SimPeer[]>();
  private lastSlot = 0;
  private nextArrival = 0;
  awaitingFirst = 0;
  live = 0;
  finishedPeers = 0;
  readonly taskIds: string[];

  constructor(
    readonly opts: Opts,
    addr: string,
    readonly index: number,
    readonly idPrefix = "",
    // Added to host numbers in ids and addresses: the probe's hosts are its own.
    readonly hostOffset = 0,
  ) {
    for (let h = 0; h < opts.hosts; h++) if (h % opts.workers === index) this.hosts.push(h);
    const n = opts.sessions > 0 ? Math.max(1, Math.ceil(opts.sessions / opts.workers)) : this.hosts.length;
    for (let s = 0; s < n; s++) this.links.push(opts.client === "connect" ? new ConnectLink(addr) : new H2Link(addr));
    this.hosts.forEach((h, k) => this.hostLink.set(h, this.links[k % n]!));
    this.taskIds = Array.from({ length: opts.tasks }, (_, t) => taskIdOf(opts, t));
    for (let i = 0; i < opts.peers; i++) {
      const h = hostOf(opts, i);
      if (h % opts.workers === index) this.peers.push(new SimPeer(this, i, h, this.taskIds[i % opts.tasks]!));
    }
    this.stats.peers = this.peers.length;
  }

  now(): number {
    return performance.now();
  }

  sec(): number {
    return Math.floor((this.now() - this.t0Perf) / 1000);
  }

  announce(h: number): Promise<unknown> {
    this.stats.hostAnnounces++;
    return this.hostLink.get(h)!.announceHost(
      create(schedulerv1.AnnounceHostRequestSchema, {
        host: {
          id: `h${h + this.hostOffset}`,
          hostname: `bench-host-${h + this.hostOffset}`,
          ip: ipOf(h + this.hostOffset),
          uploadPort: 65002,
          apiPort: 0,
          type: HostType.NORMAL,
          uploadSlots: 0,
        },
        intervalSeconds: ANNOUNCE_INTERVAL_S,
      }),
    );
  }

  async announceAll(): Promise<void> {
    const queue = [...this.hosts];
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let h = queue.shift(); h !== undefined; h = queue.shift()) await this.announce(h);
      }),
    );
  }

  schedule(p: SimPeer, at: number): void {
    const slot = Math.max(Math.floor(at / TICK_MS), this.lastSlot + 1);
    let b = this.wheel.get(slot);
    if (!b) this.wheel.set(slot, (b = []));
    b.push(p);
  }

  async run(t0: number): Promise<WorkerResult> {
    const o = this.opts;
    const wait = t0 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    this.t0 = t0;
    this.t0Perf = this.now();
    this.lastSlot = Math.floor(this.t0Perf / TICK_MS);
    const cpu0 = process.cpuUsage();
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    const gcObs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.stats.gcPauses.push({ at: performance.timeOrigin + e.startTime, ms: e.duration });
    });
    gcObs.observe({ entryTypes: ["gc"] });
    const deadline = this.t0Perf + o.durationS * 1000;
    // Keep-alive: every host re-announces once per interval, spread evenly
    // over it (a burst of them would stall the scheduler's loop for a while
    // each second, which real daemons, announcing at random phases, do not).
    let hk = 0;
    // Owed by the time elapsed, not per tick: a client whose loop runs late
    // (a busy machine) must not fall behind and let its hosts time out.
    const KEEPALIVE_TICK_MS = 20;
    let owed = 0;
    let lastKeepalive = this.now();
    const keepalive = setInterval(() => {
      const now = this.now();
      owed += (this.hosts.length * (now - lastKeepalive)) / (ANNOUNCE_INTERVAL_S * 1000);
      lastKeepalive = now;
      for (; owed >= 1; owed--) {
        const h = this.hosts[hk++ % this.hosts.length]!;
        this.announce(h).catch((e: unknown) => bump(this.stats.errors, `announceHost: ${(e as Error).message}`));
      }
    }, KEEPALIVE_TICK_MS);
    const perWorkerInflight = Math.max(1, Math.ceil(o.inflight / o.workers));
    await new Promise<void>((resolveDone) => {
      const timer = setInterval(() => {
        const now = this.now();
        // Arrivals.
        while (this.nextArrival < this.peers.length) {
          const p = this.peers[this.nextArrival]!;
          if (o.rate > 0) {
            if (this.t0Perf + (p.i / o.rate) * 1000 > now) break;
          } else if (this.awaitingFirst >= perWorkerInflight) break;
          this.nextArrival++;
          p.start();
        }
        // Piece timers due.
        const slot = Math.floor(now / TICK_MS);
        for (let s = this.lastSlot + 1; s <= slot; s++) {
          const b = this.wheel.get(s);
          if (!b) continue;
          this.wheel.delete(s);
          for (const p of b) p.step();
        }
        this.lastSlot = slot;
        const allDone = this.nextArrival === this.peers.length && this.live === 0;
        if (allDone || now > deadline) {
          clearInterval(timer);
          resolveDone();
        }
      }, TICK_MS);
    });
    clearInterval(keepalive);
    this.stats.doneAt = this.now() - this.t0Perf;
    // Whatever is still open at the deadline is aborted and counted.
    for (const p of this.peers) p.abort();
    await new Promise((r) => setTimeout(r, 200));
    loop.disable();
    gcObs.disconnect();
    const cpu = process.cpuUsage(cpu0);
    this.stats.cpuS = (cpu.user + cpu.system) / 1e6;
    this.stats.loopDelayP99Ms = loop.percentile(99) / 1e6;
    this.stats.loopDelayMaxMs = loop.max / 1e6;
    return this.stats;
  }
}

class SimPeer {
  private stream: PeerStream | undefined;
  private batcher: PieceReportBatcher | undefined;
  readonly peerId: string;
  readonly hostId: string;
  private state: "idle" | "waiting" | "p2p" | "source" | "closing" | "done" = "idle";
  private candidates: string[] = [];
  private readonly blocklist = new Set<string>();
  private readonly failures = new Map<string, number>();
  private piece = 0;
  private turn = 0;
  private awaiting: "register" | "reschedule" | undefined;
  private awaitAt = 0;
  private stalledSince = 0;
  private readonly rescheduleAt: number;
  private rescheduled = false;
  private failed = false;
  private ended = false;

  constructor(
    private readonly w: Worker,
    readonly i: number,
    readonly host: number,
    readonly taskId: string,
  ) {
    this.peerId = `${w.idPrefix}p${i}`;
    this.hostId = `h${host + w.hostOffset}`;
    this.rescheduleAt = Math.random() < w.opts.reschedule ? Math.max(1, Math.floor(w.opts.pieces / 2)) : -1;
  }

  private send(request: Req): void {
    if (this.batcher) this.batcher.send(request);
    else this.put(request);
  }

  // One message on the wire.
  private put(request: Req): void {
    this.stream!.send(request);
    bump(this.w.stats.requests, request.case ?? "none");
    bumpSec(this.w.stats.secReqs, this.w.sec());
  }

  // Half-close, after the pieces still held (as the daemon's session close).
  private end(): void {
    this.batcher?.close();
    this.stream!.end();
  }

  start(): void {
    const w = this.w;
    w.live++;
    w.awaitingFirst++;
    this.state = "waiting";
    this.stream = w.hostLink.get(this.host)!.openPeer(
      this,
      (a) => this.onResponse(a),
      (err) => this.onEnd(err),
    );
    if (w.opts.batch) this.batcher = new PieceReportBatcher((r) => this.put(r), w.opts.batch);
    this.awaiting = "register";
    this.awaitAt = w.now();
    this.send({
      case: "registerPeer",
      value: create(schedulerv1.RegisterPeerRequestSchema, {
        download: { url: `http://origin.bench/blob/${this.taskId.slice(0, 12)}`, headers: { authorization: "Bearer bench" } },
        finishedPieces: 0,
      }),
    });
    w.stats.regSent++;
    w.stats.firstRegAt = Math.min(w.stats.firstRegAt, this.awaitAt - w.t0Perf);
    w.stats.lastRegAt = Math.max(w.stats.lastRegAt, this.awaitAt - w.t0Perf);
    bumpSec(w.stats.secRegs, w.sec());
  }

  private onEnd(err: string | undefined): void {
    const w = this.w;
    if (this.ended) return;
    this.ended = true;
    this.batcher?.close();
    let outcome: string;
    if (err === "aborted") outcome = "aborted at the deadline";
    else if (err !== undefined) {
      outcome = "stream error";
      bump(w.stats.errors, `AnnouncePeer: ${err}`);
    } else if (this.failed) outcome = "task failed";
    else outcome = this.state === "closing" ? "finished" : "stream ended early";
    if (this.awaiting === "register") w.awaitingFirst--;
    this.awaiting = undefined;
    this.state = "done";
    bump(w.stats.outcomes, outcome);
    w.live--;
  }

  abort(): void {
    if (this.ended || this.state === "idle") return;
    this.stream!.abort();
  }

  private onResponse(r: Answer): void {
    const w = this.w;
    bump(w.stats.responses, r.case);
    w.stats.respAt.push(w.now() - w.t0Perf);
    bumpSec(w.stats.secResps, w.sec());
    if (this.awaiting) {
      const ms = w.now() - this.awaitAt;
      if (this.awaiting === "register") {
        w.stats.regLat.push(ms);
        w.stats.regSentSec.push(Math.max(0, Math.floor((this.awaitAt - w.t0Perf) / 1000)));
        w.stats.regSentMs.push(this.awaitAt - w.t0Perf);
        w.stats.regAnswered++;
        w.stats.lastRegAnsweredAt = Math.max(w.stats.lastRegAnsweredAt, w.now() - w.t0Perf);
        w.awaitingFirst--;
      } else {
        w.stats.reschedLat.push(ms);
      }
      this.awaiting = undefined;
    }
    if (this.state === "closing" || this.state === "done") return;
    switch (r.case) {
      case "normalTask": {
        for (const id of r.parents) {
          if (!this.blocklist.has(id) && !this.candidates.includes(id)) this.candidates.push(id);
        }
        this.send({ case: "downloadPeerStarted", value: create(schedulerv1.DownloadPeerStartedRequestSchema) });
        if (this.state === "waiting") {
          this.state = "p2p";
          this.next();
        }
        break;
      }
      case "needBackToSource":
        if (this.state === "source") break;
        this.state = "source";
        this.send({
          case: "backToSourceStarted",
          value: create(schedulerv1.BackToSourceStartedRequestSchema, {
            contentLength: BigInt(w.opts.pieces * PIECE_LENGTH),
            pieceLength: BigInt(PIECE_LENGTH),
            contentLengthKnown: true,
          }),
        });
        this.next();
        break;
      case "taskFailed":
        this.state = "closing";
        this.failed = true;
        this.end();
        break;
      case "emptyTask":
      case "localHit":
        this.finish();
        break;
      default:
        break;
    }
  }

  private next(): void {
    const ms = this.w.opts.pieceMs * (0.5 + Math.random());
    this.w.schedule(this, this.w.now() + ms);
  }

  // One piece report (or a reschedule) when the peer's timer fires.
  step(): void {
    const w = this.w;
    const o = w.opts;
    if (this.state === "source") {
      this.send({
        case: "pieceFinished",
        value: create(schedulerv1.PieceFinishedRequestSchema, { number: this.piece, length: BigInt(PIECE_LENGTH), crc32: 1, costMicros: 40_000n }),
      });
      this.piece++;
      if (this.piece >= o.pieces) this.finish();
      else this.next();
      return;
    }
    if (this.state !== "p2p") return;
    if (this.candidates.length === 0) {
      // Nobody to fetch from: wait for the scheduler, and ask again if it stays quiet.
      const now = w.now();
      if (this.stalledSince === 0) this.stalledSince = now;
      else if (now - this.stalledSince > STALL_RESCHEDULE_MS && !this.awaiting) {
        this.stalledSince = now;
        this.reschedule("no progress");
      }
      this.next();
      return;
    }
    this.stalledSince = 0;
    if (this.piece === this.rescheduleAt && !this.rescheduled) {
      this.rescheduled = true;
      const bad = this.candidates.shift()!;
      this.blocklist.add(bad);
      this.reschedule("slow parent");
      this.next();
      return;
    }
    const parent = this.candidates[this.turn++ % this.candidates.length]!;
    if (Math.random() < o.failRate) {
      this.send({
        case: "pieceFailed",
        value: create(schedulerv1.PieceFailedRequestSchema, { number: this.piece, parentId: parent, reason: "connection reset", temporary: false }),
      });
      const n = (this.failures.get(parent) ?? 0) + 1;
      this.failures.set(parent, n);
      // The scheduler blocklists a parent at its second failure: so do we.
      if (n >= 2) {
        this.blocklist.add(parent);
        this.candidates = this.candidates.filter((c) => c !== parent);
      }
      this.next();
      return;
    }
    this.send({
      case: "pieceFinished",
      value: create(schedulerv1.PieceFinishedRequestSchema, {
        number: this.piece,
        length: BigInt(PIECE_LENGTH),
        crc32: 1,
        parentId: parent,
        costMicros: BigInt(20_000 + Math.floor(Math.random() * 40_000)),
      }),
    });
    this.piece++;
    if (this.piece >= o.pieces) this.finish();
    else this.next();
  }

  private reschedule(description: string): void {
    this.send({ case: "reschedule", value: create(schedulerv1.RescheduleRequestSchema, { blocklistParentIds: [...this.blocklist], description }) });
    this.w.stats.reschedSent++;
    this.awaiting = "reschedule";
    this.awaitAt = this.w.now();
  }

  private finish(): void {
    const info = { contentLength: BigInt(this.w.opts.pieces * PIECE_LENGTH), pieceLength: BigInt(PIECE_LENGTH), totalPieces: this.w.opts.pieces };
    if (this.state === "source") this.send({ case: "backToSourceFinished", value: create(schedulerv1.BackToSourceFinishedRequestSchema, info) });
    else this.send({ case: "peerFinished", value: create(schedulerv1.PeerFinishedRequestSchema, info) });
    this.state = "closing";
    this.w.finishedPeers++;
    // A reschedule still unanswered stays unanswered: do not count it.
    if (this.awaiting === "reschedule") this.awaiting = undefined;
    this.end();
  }
}

// The latency probe: one more client process, registering peers of its own
// tasks on its own hosts at a low rate while the load runs, over the whole
// registration window. Its event loop is nearly idle, so what it measures is
// the scheduler's answer time as a daemon on another machine would see it,
// not the load client's own queueing.
const PROBE_TASKS = 10;
const PROBE_HOSTS = 100;
function probeOpts(o: Opts): Opts {
  const windowS = o.rate > 0 ? o.peers / o.rate : 10;
  return {
    ...o,
    peers: Math.max(1, Math.round(o.probeRate * windowS)),
    rate: o.probeRate,
    tasks: PROBE_TASKS,
    hosts: PROBE_HOSTS,
    workers: 1,
    sessions: 0,
    runTag: `${o.runTag}-probe`,
  };
}

function workerMain(): void {
  let w: Worker | undefined;
  let init: Extract<ToWorker, { type: "init" }> | undefined;
  const send = (m: FromWorker) => process.send!(m);
  process.on("message", (m: ToWorker) => {
    if (m.type === "warmup") {
      const o = init!.opts;
      // The probe warms only its own code (one second of its registrations,
      // on tasks of their own, a few pieces each), so its first answers in
      // the load time the scheduler, not the probe's cold JIT and sessions.
      const warm = init!.probe
        ? new Worker(
            { ...probeOpts(o), peers: Math.max(20, o.probeRate), pieces: 3, runTag: `${o.runTag}-probe-warmup`, durationS: 10 },
            init!.addr,
            0,
            "pw-",
            o.hosts,
          )
        : new Worker({ ...o, peers: o.warmup, runTag: `${o.runTag}-warmup`, durationS: Math.min(o.durationS, 30) }, init!.addr, init!.index, "w-");
      warm.run(m.t0).then(
        () => {
          for (const l of warm.links) l.close();
          send({ type: "warm" });
        },
        (e: unknown) => send({ type: "error", message: (e as Error).stack ?? String(e) }),
      );
    } else if (m.type === "init") {
      init = m;
      w = m.probe ? new Worker(probeOpts(m.opts), m.addr, 0, "probe-", m.opts.hosts) : new Worker(m.opts, m.addr, m.index);
      w.announceAll().then(
        () => send({ type: "hosts" }),
        (e: unknown) => send({ type: "error", message: `announceHost: ${(e as Error).message}` }),
      );
    } else if (m.type === "go") {
      w!.run(m.t0).then(
        (result) => send({ type: "done", result }),
        (e: unknown) => send({ type: "error", message: (e as Error).stack ?? String(e) }),
      );
    } else if (m.type === "exit") {
      process.exit(0);
    }
  });
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------- main

interface Sample {
  t: number;
  schedSys: number;
  at: number;
  mainWait: number;
  machine: { busy: number; idle: number; steal: number };
  schedCpu: number;
  schedMain: number;
  rss: number;
  clientCpu: number;
  selfCpu: number;
}

// Kernel-mode CPU seconds of a process (syscalls, page faults).
function sysSeconds(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[12]) / 100;
}

function threadCpuSeconds(pid: number, tid: number): number {
  const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

// Main thread: seconds on a CPU and seconds runnable but waiting for one.
function threadSched(pid: number, tid: number): { run: number; wait: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ").map(Number);
  return { run: run! / 1e9, wait: wait! / 1e9 };
}

// Whole machine: jiffies busy, idle and stolen (by the hypervisor), all cores.
function machineCpu(): { busy: number; idle: number; steal: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq, idle: idle + iowait, steal };
}

function procStatus(pid: number, key: string): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ProbeReading {
  eluPct: number;
  delayP50Ms: number;
  delayP99Ms: number;
  delayMaxMs: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  heapUsedBeforeGc: number;
  external: number;
  arrayBuffers: number;
  gc: boolean;
}

class SchedulerProc {
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly probeFile: string;
  readonly outFile: string;
  // The V8 pool flag the bench added (the scheduler's default here), if any.
  readonly poolFlag: string | undefined;
  private probes = 0;

  constructor(
    dir: string,
    logLevel: string,
    cpuProfDir: string | undefined,
    extra: string[],
    nodeArgs: string[],
    private readonly port: number,
  ) {
    this.logFile = join(dir, "scheduler.log");
    this.probeFile = join(dir, "probe.jsonl");
    const probe = pathToFileURL(join(ROOT, "dist", "bench", "scheduler-probe.js")).href;
    // `damselfly scheduler` would start itself again with the V8 thread pool
    // it wants on this machine (src/cli/v8-pool.ts); started with that pool
    // here, the process measured is the scheduler itself.
    const pool = nodeArgs.some((a) => a.startsWith("--v8-pool-size")) ? [] : schedulerV8PoolArgs();
    this.poolFlag = pool[0];
    const nodeFlags = ["--expose-gc", "--import", probe, ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : []), ...pool, ...nodeArgs];
    const fd = openSync(this.logFile, "w");
    this.outFile = join(dir, "scheduler.out");
    const out = openSync(this.outFile, "w");
    this.child = spawn(process.execPath, [...nodeFlags, BIN, "scheduler", "--listen", `127.0.0.1:${port}`, "--log-level", logLevel, ...extra], {
      stdio: ["ignore", out, fd],
      // The simulated daemons all connect from 127.0.0.1, one session per
      // host: the cap of connections per address would stop them.
      env: { DAMSELFLY_SCHEDULER_LIMITS_CONNECTIONS_PER_ADDRESS: "0", ...process.env, DAMSELFLY_BENCH_PROBE: this.probeFile },
    });
    closeSync(fd);
    closeSync(out);
  }

  get pid(): number {
    return this.child.pid!;
  }

  // Its "scheduler ready" line, or (log levels above info) its port accepting.
  async ready(): Promise<string> {
    const end = Date.now() + 20_000;
    const addr = `127.0.0.1:${this.port}`;
    while (Date.now() < end) {
      if (this.child.exitCode !== null) throw new Error(`scheduler exited with ${this.child.exitCode}: ${readFileSync(this.logFile, "utf8").slice(-2000)}`);
      for (const line of readFileSync(this.logFile, "utf8").split("\n")) {
        if (line.includes('"scheduler ready"')) return addr;
      }
      const open = await new Promise<boolean>((res) => {
        const c = connect(this.port, "127.0.0.1", () => {
          c.destroy();
          res(true);
        });
        c.on("error", () => res(false));
      });
      if (open) return addr;
      await sleep(50);
    }
    throw new Error('scheduler: no "scheduler ready" within 20s');
  }

  // Full GC in the scheduler, then its memory figures.
  async probe(): Promise<ProbeReading> {
    const want = ++this.probes;
    this.child.kill("SIGUSR2");
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      if (existsSync(this.probeFile)) {
        const lines = readFileSync(this.probeFile, "utf8").trim().split("\n");
        if (lines.length >= want) return JSON.parse(lines[want - 1]!) as ProbeReading;
      }
      await sleep(20);
    }
    throw new Error("scheduler did not answer the memory probe");
  }

  stop(): Promise<number | null> {
    return new Promise((resolveStop) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolveStop(this.child.exitCode);
      this.child.once("exit", (code) => resolveStop(code));
      this.child.kill("SIGTERM");
      setTimeout(() => this.child.kill("SIGKILL"), 20_000).unref();
    });
  }
}

// Self and inclusive time per function of a .cpuprofile, plus a coarse split
// by where the code lives.
function summarizeProfile(file: string, top: number): string[] {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }
  const prof = JSON.parse(readFileSync(file, "utf8")) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map<number, Node>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) byId.set(n.id, n);
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const short = (url: string) =>
    url
      .replace(/^file:\/\//, "")
      .replace(`${ROOT}/`, "")
      .replace(/^node_modules\//, "");
  const fnKey = (n: Node) =>
    `${n.callFrame.functionName || "(anonymous)"}  ${short(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`;
  const bucket = (n: Node): string => {
    const u = n.callFrame.url;
    const f = n.callFrame.functionName;
    if (!u) return f === "(garbage collector)" ? "GC" : f === "(idle)" ? "idle" : f === "(program)" ? "(program: native, not attributed)" : `native: ${f}`;
    if (u.includes("/dist/src/scheduler/")) return "damselfly scheduler (dist/src/scheduler)";
    if (u.includes("/dist/src/")) return "damselfly common/protocol (dist/src/common, protocol)";
    if (u.includes("@connectrpc/connect-node")) return "@connectrpc/connect-node";
    if (u.includes("@connectrpc/connect")) return "@connectrpc/connect (core)";
    if (u.includes("@bufbuild/protobuf")) return "@bufbuild/protobuf";
    if (/pino|sonic-boom|thread-stream|redact|quick-format|safe-stable/.test(u)) return "logging (pino)";
    if (u.startsWith("node:internal/http2") || u === "node:http2") return "node http2";
    if (u.startsWith("node:internal/streams") || u.startsWith("node:stream")) return "node streams";
    if (u.startsWith("node:")) return "node other";
    return "other JS";
  };
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const buckets = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let k = 0; k < prof.samples.length; k++) {
    const dt = prof.timeDeltas[k + 1] ?? prof.timeDeltas[k] ?? 0;
    const n = byId.get(prof.samples[k]!)!;
    total += dt;
    if (n.callFrame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    self.set(fnKey(n), (self.get(fnKey(n)) ?? 0) + dt);
    buckets.set(bucket(n), (buckets.get(bucket(n)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const key = fnKey(byId.get(id)!);
      if (seen.has(key)) continue;
      seen.add(key);
      incl.set(key, (incl.get(key) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const pct = (v: number) => `${((100 * v) / busy).toFixed(1).padStart(5)}%`;
  const ms = (v: number) => `${(v / 1000).toFixed(0).padStart(6)} ms`;
  const out: string[] = [];
  out.push(
    `profile ${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((100 * busy) / total).toFixed(0)}%), shares below are of busy time`,
  );
  out.push("  by where the code lives (self time):");
  let smallNative = 0;
  for (const [k, v] of [...buckets].sort((a, b) => b[1] - a[1])) {
    if (k.startsWith("native: ") && v < busy / 200) smallNative += v;
    else out.push(`    ${ms(v)} ${pct(v)}  ${k}`);
  }
  if (smallNative > 0) out.push(`    ${ms(smallNative)} ${pct(smallNative)}  native calls under 0.5% each`);
  out.push(`  top ${top} functions by self time:`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) out.push(`    ${ms(v)} ${pct(v)}  ${k}`);
  out.push(`  top ${top} damselfly functions by inclusive time:`);
  const ours = [...incl].filter(([k]) => k.includes("dist/src/"));
  for (const [k, v] of ours.sort((a, b) => b[1] - a[1]).slice(0, top)) out.push(`    ${ms(v)} ${pct(v)}  ${k}`);
  out.push(`  top ${Math.ceil(top / 2)} RPC-stack functions (Connect, node:http2) by inclusive time:`);
  const rpc = [...incl].filter(([k]) => k.includes("@connectrpc/") || k.includes("node:internal/http2"));
  for (const [k, v] of rpc.sort((a, b) => b[1] - a[1]).slice(0, Math.ceil(top / 2))) out.push(`    ${ms(v)} ${pct(v)}  ${k}`);
  return out;
}

function logSummary(file: string): string {
  const counts = new Map<string, number>();
  let lines = 0;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line) continue;
    lines++;
    try {
      const j = JSON.parse(line) as { level?: number; msg?: string };
      const lvl = j.level === 30 ? "info" : j.level === 40 ? "warn" : j.level === 50 ? "error" : j.level === 20 ? "debug" : `l${j.level}`;
      const k = `${lvl} "${j.msg}"`;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    } catch {
      counts.set("(not JSON)", (counts.get("(not JSON)") ?? 0) + 1);
    }
  }
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8);
  return `${lines} lines: ${top.map(([k, v]) => `${k} ${v}`).join(", ")}`;
}

async function main(): Promise<void> {
  const opts: Opts = {
    peers: Number(opt("--peers", "10000")),
    tasks: Number(opt("--tasks", "100")),
    hosts: Number(opt("--hosts", "1000")),
    pieces: Number(opt("--pieces", "20")),
    rate: Number(opt("--rate", "5000")),
    inflight: Number(opt("--inflight", "256")),
    pieceMs: Number(opt("--piece-ms", "300")),
    durationS: Number(opt("--duration", "60")),
    workers: Number(opt("--workers", "1")),
    sessions: Number(opt("--sessions", "0")),
    failRate: Number(opt("--fail-rate", "0.02")),
    reschedule: Number(opt("--reschedule", "0.05")),
    client: opt("--client", "h2") === "connect" ? "connect" : "h2",
    batch:
      opt("--reports", "batched") === "per-piece"
        ? false
        : {
            windowMs: Number(opt("--batch-ms", String(PIECE_BATCH_DEFAULTS.windowMs))),
            maxPieces: Number(opt("--batch-max", String(PIECE_BATCH_DEFAULTS.maxPieces))),
          },
    runTag: `${process.pid}-${Date.now()}`,
    warmup: Number(opt("--warmup", "0")),
    probeRate: Number(opt("--probe-rate", "0")),
  };
  for (const [k, v] of Object.entries(opts)) if (typeof v === "number" && !(v >= 0)) throw new Error(`bad --${k}: ${v}`);
  if (opts.workers < 1 || opts.tasks < 1 || opts.hosts < 1 || opts.pieces < 1) throw new Error("--workers, --tasks, --hosts and --pieces must be >= 1");
  if (opts.batch && !(opts.batch.windowMs >= 0 && opts.batch.maxPieces >= 1)) throw new Error("--batch-ms must be >= 0 and --batch-max >= 1");
  const logLevel = opt("--log-level", "info");
  const profArg = opt("--cpu-prof", "");
  const cpuProfDir = profArg ? resolve(profArg) : undefined;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const extra = opt("--scheduler-args", "").split(/\s+/).filter(Boolean);
  const nodeArgs = opt("--scheduler-node-args", "").split(/\s+/).filter(Boolean);
  const clientNodeArgs = opt("--client-node-args", "").split(/\s+/).filter(Boolean);
  const keep = opt("--keep", "");
  const timeline = process.argv.includes("--timeline");
  // Load clients at this nice level: on a 2-core machine they otherwise take
  // the scheduler's CPU in its bursts, which on a cluster they would not.
  const niceLoad = Number(opt("--nice-load", "0"));
  const loadCpus = opt("--load-cpus", "");

  const dir = mkdtempSync(join(tmpdir(), "df-bench-sched-"));
  // A free port, so readiness can be seen without the info-level log line.
  const freePort = () =>
    new Promise<number>((res, rej) => {
      const srv = createServer();
      srv.once("error", rej);
      srv.listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
  const port = await freePort();
  // The scheduler's own view of its decision times, from its /metrics.
  const metricsPort = await freePort();
  const sched = new SchedulerProc(dir, logLevel, cpuProfDir, [...extra, "--metrics-listen", `127.0.0.1:${metricsPort}`], nodeArgs, port);
  const workers: ChildProcess[] = [];
  let sampler: NodeJS.Timeout | undefined;
  // The load phase is bounded by --duration; this bounds the setup and the
  // readings around it, so a hung scheduler or worker cannot outlive the run.
  const watchdog = setTimeout(
    () => {
      console.error(`scheduler-scale: still running ${WATCHDOG_SLACK_S} s past --duration: killing the scheduler and the workers`);
      for (const w of workers) w.kill("SIGKILL");
      sched.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      process.exit(2);
    },
    (opts.durationS + WATCHDOG_SLACK_S) * 1000,
  );
  watchdog.unref();
  try {
    const addr = await sched.ready();
    const pid = sched.pid;
    await sleep(300);
    const rssReady = procStatus(pid, "VmRSS");
    const probeReady = await sched.probe();

    // Client workers: announce their hosts, then wait for "go".
    const inbox: FromWorker[][] = [];
    const waitAll = async (type: FromWorker["type"], ms: number, from: ChildProcess[] = workers): Promise<FromWorker[]> => {
      const end = Date.now() + ms;
      for (;;) {
        const got = inbox.filter((_, k) => from.includes(workers[k]!)).map((q) => q.find((m) => m.type === type || m.type === "error"));
        const err = got.find((m) => m?.type === "error");
        if (err && err.type === "error") throw new Error(`worker: ${err.message}`);
        if (got.every((m) => m !== undefined)) return got as FromWorker[];
        if (workers.some((w) => w.exitCode !== null)) throw new Error("a client worker exited");
        if (Date.now() > end) throw new Error(`client workers: no "${type}" within ${ms} ms`);
        await sleep(20);
      }
    };
    const hostsT0 = Date.now();
    // The probe, if any, is the last worker.
    const probing = opts.probeRate > 0;
    for (let k = 0; k < opts.workers + (probing ? 1 : 0); k++) {
      const w = fork(SELF, ["--worker"], { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: clientNodeArgs });
      inbox.push([]);
      w.on("message", (m: FromWorker) => inbox[k]!.push(m));
      workers.push(w);
      if (niceLoad > 0 && k < opts.workers && w.pid) setPriority(w.pid, niceLoad);
      // Every thread of the load client (its V8 helpers too) on these CPUs.
      if (loadCpus && k < opts.workers && w.pid) execFileSync("taskset", ["-a", "-p", "-c", loadCpus, String(w.pid)], { stdio: "ignore" });
      w.send({ type: "init", opts, addr, index: k, probe: k === opts.workers } satisfies ToWorker);
    }
    await waitAll("hosts", 60_000);
    // Hosts announced more than the host timeout before their first
    // keep-alive in the load phase would be dropped: worth seeing.
    const hostsS = (Date.now() - hostsT0) / 1000;
    let warmS = 0;
    if (opts.warmup > 0 || probing) {
      const w0 = Date.now();
      // Without --warmup only the probe warms up (itself).
      const warming = opts.warmup > 0 ? workers : workers.slice(opts.workers);
      for (const w of warming) w.send({ type: "warmup", t0: w0 + 200 } satisfies ToWorker);
      await waitAll("warm", (Math.min(opts.durationS, 30) + 30) * 1000, warming);
      warmS = (Date.now() - w0) / 1000;
      await sleep(1000);
    }
    await sleep(300);
    const rssHosts = procStatus(pid, "VmRSS");
    const probeHosts = await sched.probe();

    // Load phase.
    const t0 = Date.now() + 200;
    for (const w of workers) w.send({ type: "go", t0 } satisfies ToWorker);
    await sleep(t0 - Date.now());
    const samples: Sample[] = [];
    const clientCpu = () => workers.reduce((s, w) => s + (w.pid && w.exitCode === null ? cpuSeconds(w.pid) : 0), 0);
    const sample = () =>
      samples.push({
        t: Date.now() - t0,
        at: Date.now(),
        mainWait: threadSched(pid, pid).wait,
        machine: machineCpu(),
        schedCpu: cpuSeconds(pid),
        schedSys: sysSeconds(pid),
        schedMain: threadCpuSeconds(pid, pid),
        rss: procStatus(pid, "VmRSS"),
        clientCpu: clientCpu(),
        selfCpu: cpuSeconds(process.pid),
      });
    sample();
    sampler = setInterval(sample, 1000);
    const done = (await waitAll("done", (opts.durationS + 30) * 1000)) as Extract<FromWorker, { type: "done" }>[];
    clearInterval(sampler);
    sampler = undefined;
    sample();
    const probeLoad = await sched.probe();
    const results = done.map((d) => d.result);
    const probeResult = probing ? results.pop() : undefined;
    // Each probe answer with its send time (wall clock), beside the
    // scheduler's GC events (probe.jsonl.gc), for --keep.
    if (keep && probeResult) {
      writeFileSync(
        join(dir, "probe-samples.jsonl"),
        probeResult.regLat.map((ms, j) => JSON.stringify({ at: t0 + probeResult.regSentMs[j]!, ms })).join("\n") + "\n",
      );
      writeFileSync(join(dir, "probe-client-gc.jsonl"), probeResult.gcPauses.map((g) => JSON.stringify(g)).join("\n") + "\n");
    }
    const loadS = Math.max(...results.map((r) => r.doneAt)) / 1000;
    const first = samples[0]!;
    const last = samples[samples.length - 1]!;
    const schedCpuS = last.schedCpu - first.schedCpu;
    const schedSysS = last.schedSys - first.schedSys;
    const schedMainS = last.schedMain - first.schedMain;
    const mainWaitS = last.mainWait - first.mainWait;
    const mTot = last.machine.busy + last.machine.idle + last.machine.steal - (first.machine.busy + first.machine.idle + first.machine.steal);
    const machineBusy = (last.machine.busy - first.machine.busy) / mTot;
    const machineSteal = (last.machine.steal - first.machine.steal) / mTot;
    const cores = availableParallelism();
    // CPU used by processes other than the scheduler, the workers and this one
    // (another build or test on the machine skews every figure here).
    const othersCores =
      machineBusy * cores - (last.schedCpu - first.schedCpu + last.clientCpu - first.clientCpu + last.selfCpu - first.selfCpu) / ((last.t - first.t) / 1000);
    const peakRss = procStatus(pid, "VmHWM");

    // Memory with every peer held (finished peers stay as parents), streams closed.
    await sleep(1000);
    const rssAfter = procStatus(pid, "VmRSS");
    const probeAfter = await sched.probe();
    const inSched = await decisionHistogram(metricsPort);
    const statClient = createClient(schedulerv1.SchedulerService, createRpcTransport(`http://${addr}`));
    let held = 0;
    let finishedHeld = 0;
    let bts = 0;
    for (let t = 0; t < opts.tasks; t++) {
      try {
        const s = await statClient.statTask({ taskId: taskIdOf(opts, t) });
        held += s.peerCount;
        finishedHeld += s.finishedPeerCount;
        bts += s.backToSourcePeerCount;
      } catch {
        /* task gone */
      }
    }
    for (const w of workers) w.send({ type: "exit" } satisfies ToWorker);
    await Promise.all(workers.map((w) => (w.exitCode !== null ? undefined : new Promise((r) => w.once("exit", r)))));
    await sleep(1000);
    const rssGone = procStatus(pid, "VmRSS");
    const probeGone = await sched.probe();
    const totalCpu = cpuSeconds(pid);
    const code = await sched.stop();

    // ---- figures
    const sum = (f: (r: WorkerResult) => number) => results.reduce((s, r) => s + f(r), 0);
    const merge = (f: (r: WorkerResult) => Record<string, number>) => {
      const m: Record<string, number> = {};
      for (const r of results) for (const [k, v] of Object.entries(f(r))) bump(m, k, v);
      return m;
    };
    const mergeSec = (f: (r: WorkerResult) => number[]) => {
      const a: number[] = [];
      for (const r of results)
        f(r).forEach((v, s) => {
          while (a.length <= s) a.push(0);
          a[s]! += v;
        });
      return a;
    };
    const fmtMap = (m: Record<string, number>) =>
      Object.entries(m)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
    const regLat = results.flatMap((r) => r.regLat).sort((a, b) => a - b);
    const reschedLat = results.flatMap((r) => r.reschedLat).sort((a, b) => a - b);
    const regSent = sum((r) => r.regSent);
    const regAnswered = sum((r) => r.regAnswered);
    const firstReg = Math.min(...results.map((r) => r.firstRegAt));
    const regWindowS = Math.max(1e-3, (Math.max(...results.map((r) => r.lastRegAt)) - firstReg) / 1000);
    // From the first registration to the last one's first answer, decisions
    // were owed: the responses in that window measure the scheduler's
    // decision throughput under backlog (when it keeps up, the offered rate).
    const lastAnswer = Math.max(...results.map((r) => r.lastRegAnsweredAt));
    const backlogS = Math.max(1e-3, (lastAnswer - firstReg) / 1000);
    const backlogResps = results.reduce((n, r) => n + r.respAt.filter((t) => t >= firstReg && t <= lastAnswer).length, 0);
    const responses = merge((r) => r.responses);
    const requests = merge((r) => r.requests);
    const respTotal = Object.values(responses).reduce((a, b) => a + b, 0);
    const reqTotal = Object.values(requests).reduce((a, b) => a + b, 0);
    const secRegs = mergeSec((r) => r.secRegs);
    const secResps = mergeSec((r) => r.secResps);
    const secReqs = mergeSec((r) => r.secReqs);
    const clientCpuS = sum((r) => r.cpuS);
    const lat = (xs: number[]) =>
      xs.length === 0
        ? "none"
        : `p50 ${percentile(xs, 0.5).toFixed(2)} ms  p99 ${percentile(xs, 0.99).toFixed(2)} ms  max ${xs[xs.length - 1]!.toFixed(1)} ms  (n=${xs.length})`;
    const busiestResp = Math.max(0, ...secResps);
    const ticks = existsSync(`${sched.probeFile}.ticks`)
      ? readFileSync(`${sched.probeFile}.ticks`, "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { at: number; activeMs: number; idleMs: number; delayP99Ms: number; delayMaxMs: number })
      : [];
    // Loop utilisation between the last ticks at or before a and b (a
    // saturated loop runs the 1 s tick timer late, so spans stretch), and
    // the longest the timer ran late among the ticks in (a, b]: how long the
    // loop went without reaching its timers. Undefined: no tick ran in (a, b].
    const loopBetween = (a: number, b: number) => {
      const before = ticks.filter((x) => x.at <= a + 50);
      const prev = before[before.length - 1];
      const inside = ticks.filter((x) => x.at > a + 50 && x.at <= b + 50);
      const end = inside[inside.length - 1];
      if (!end) return undefined;
      const act = end.activeMs - (prev?.activeMs ?? 0);
      const idl = end.idleMs - (prev?.idleMs ?? 0);
      let late = 0;
      let last = prev?.at;
      for (const x of inside) {
        if (last !== undefined) late = Math.max(late, x.at - last - 1000);
        last = x.at;
      }
      return { eluPct: (100 * act) / Math.max(1e-9, act + idl), lateMs: Math.max(0, late) };
    };
    const perSec = samples.slice(1).map((s, k) => ({
      t: s.t / 1000,
      dt: (s.t - samples[k]!.t) / 1000,
      sched: (s.schedCpu - samples[k]!.schedCpu) / ((s.t - samples[k]!.t) / 1000),
      main: (s.schedMain - samples[k]!.schedMain) / ((s.t - samples[k]!.t) / 1000),
      client: (s.clientCpu - samples[k]!.clientCpu) / ((s.t - samples[k]!.t) / 1000),
      rss: s.rss,
      wait: (s.mainWait - samples[k]!.mainWait) / ((s.t - samples[k]!.t) / 1000),
      machine: (() => {
        const a = samples[k]!.machine;
        const b = s.machine;
        const tot = b.busy + b.idle + b.steal - (a.busy + a.idle + a.steal);
        const dt = (s.t - samples[k]!.t) / 1000;
        const ours = (s.schedCpu - samples[k]!.schedCpu + s.clientCpu - samples[k]!.clientCpu + s.selfCpu - samples[k]!.selfCpu) / dt;
        return { busy: (b.busy - a.busy) / tot, others: Math.max(0, ((b.busy - a.busy) / tot) * availableParallelism() - ours) };
      })(),
      tick: loopBetween(samples[k]!.at, s.at),
    }));
    const full = perSec.filter((s) => s.dt >= 0.9);
    const mainMax = Math.max(0, ...full.map((s) => s.main));
    const mainHot = full.filter((s) => s.main >= 0.9).length;
    const eluMax = Math.max(0, ...full.map((s) => s.tick?.eluPct ?? 0));
    const eluHot = full.filter((s) => (s.tick?.eluPct ?? 0) >= 90).length;
    const clientMax = Math.max(0, ...full.map((s) => s.client));
    const clientHot = full.filter((s) => s.client >= 0.9 * opts.workers).length;
    const p99 = percentile(regLat, 0.99);
    const decisionsPerS = respTotal / loadS;
    // Per peer the scheduler still holds after the run (finished peers stay
    // as parents; aborted ones are dropped); the peak is per peer registered.
    const heapPerPeer = (probeAfter.heapUsed - probeHosts.heapUsed) / Math.max(1, held);
    const rssPerPeer = (rssAfter - rssHosts) / Math.max(1, held);
    const peakPerPeer = (peakRss - rssHosts) / Math.max(1, regSent);

    console.log(
      `scheduler-scale: ${regSent} peers (${opts.tasks} tasks, ${opts.hosts} hosts, ${opts.pieces} pieces/peer every ~${opts.pieceMs} ms) against one scheduler process (pid ${pid}, --log-level ${logLevel}${extra.length ? ` ${extra.join(" ")}` : ""}${sched.poolFlag ? `, ${sched.poolFlag} as the scheduler picks on ${usableCores()} CPUs` : ""}${nodeArgs.length ? `, node ${nodeArgs.join(" ")}` : ""})`,
    );
    console.log(
      `  client: ${opts.workers} worker process(es), ${opts.sessions > 0 ? opts.sessions : opts.hosts} HTTP/2 sessions (${opts.sessions > 0 ? "shared" : "one per host"}), ${opts.client === "connect" ? "Connect gRPC transport" : "gRPC over node:http2 (lean client)"}; arrivals ${opts.rate > 0 ? `open-loop at ${opts.rate}/s` : `closed-loop, ${opts.inflight} awaiting a decision`}; ${opts.hosts} hosts announced in ${hostsS.toFixed(1)} s; piece reports ${opts.batch ? `batched (window ${opts.batch.windowMs} ms, at most ${opts.batch.maxPieces})` : "one message per piece"}`,
    );
    if (opts.warmup > 0)
      console.log(
        `  warm-up               ${opts.warmup} peers of ${opts.tasks} other tasks at the same rate first, unmeasured (${warmS.toFixed(1)} s); memory baseline taken after it`,
      );
    console.log(
      `  load phase            ${loadS.toFixed(1)} s${loadS >= opts.durationS ? " (hit --duration: the rest was aborted)" : " (every peer done)"}; peer outcomes: ${fmtMap(merge((r) => r.outcomes))}`,
    );
    console.log(
      `  registrations         ${regSent} sent in ${regWindowS.toFixed(2)} s = ${(regSent / regWindowS).toFixed(0)}/s; ${regAnswered} answered, the last ${(lastAnswer / 1000).toFixed(2)} s after the first was sent = ${(regAnswered / backlogS).toFixed(0)}/s`,
    );
    console.log(
      `  decisions (responses) ${respTotal} = ${decisionsPerS.toFixed(0)}/s over the load phase; ${(backlogResps / backlogS).toFixed(0)}/s from the first registration to the last one answered; busiest second ${busiestResp}  (target >= 5,000/s: ${backlogResps / backlogS >= 5000 ? "met" : "MISSED"})`,
    );
    console.log(`      by kind           ${fmtMap(responses)}`);
    console.log(
      `  requests to sched     ${reqTotal} on AnnouncePeer streams = ${(reqTotal / loadS).toFixed(0)}/s, busiest second ${Math.max(0, ...secReqs)}: ${fmtMap(requests)}; plus ${sum((r) => r.hostAnnounces)} AnnounceHost calls`,
    );
    if (probeResult) {
      const pl = [...probeResult.regLat].sort((a, b) => a - b);
      const pp99 = pl.length ? percentile(pl, 0.99) : Infinity;
      console.log(`  register -> decision  ${lat(regLat)}  (load client: includes its own queueing)`);
      console.log(
        `  probe                 ${lat(pl)}  (target p99 < 10 ms: ${pp99 < 10 ? "met" : "MISSED"}; ${opts.probeRate}/s from a separate client process on ${PROBE_HOSTS} hosts of its own, ${pl.length} registrations over the load; its event-loop delay p99 ${probeResult.loopDelayP99Ms.toFixed(1)} ms, CPU ${probeResult.cpuS.toFixed(1)} s)`,
      );
    } else console.log(`  register -> decision  ${lat(regLat)}  (target p99 < 10 ms: ${p99 < 10 ? "met" : "MISSED"})`);
    if (inSched)
      console.log(
        `  in-scheduler decision p50 <= ${fmtLe(inSched.le(0.5))}  p99 <= ${fmtLe(inSched.le(0.99))}  (n=${inSched.count}; ${(100 * inSched.share(0.001)).toFixed(1)}% within 1 ms, ${(100 * inSched.share(0.01)).toFixed(2)}% within 10 ms: request decoded -> answer queued, from the scheduler's damselfly_scheduler_decision_duration_seconds histogram; the rest of register -> decision is waiting in line and on the wire)`,
      );
    console.log(`  reschedule -> answer  ${lat(reschedLat)}  (${sum((r) => r.reschedSent)} sent; unanswered ones wait for a parent)`);
    console.log(
      `  scheduler RSS         ${mib(rssReady)} MiB ready, ${mib(rssHosts)} MiB with ${opts.hosts} hosts, peak ${mib(peakRss)} MiB, ${mib(rssAfter)} MiB after (streams closed, sessions open), ${mib(rssGone)} MiB after clients left`,
    );
    console.log(
      `  memory per peer       ${(rssPerPeer / 1024).toFixed(1)} KiB RSS held ((after - with hosts) / ${held} held peers), ${(peakPerPeer / 1024).toFixed(1)} KiB at peak (per peer registered), ${(heapPerPeer / 1024).toFixed(2)} KiB JS heap after full GC (heap used ${mib(probeHosts.heapUsed)} -> ${mib(probeAfter.heapUsed)} MiB of ${mib(probeAfter.heapTotal)} MiB, external ${mib(probeHosts.external)} -> ${mib(probeAfter.external)} MiB)`,
    );
    console.log(
      `  scheduler state       ${held} peers held across ${opts.tasks} tasks after the run (${finishedHeld} finished, ${bts} back-to-source); heap after clients left ${mib(probeGone.heapUsed)} MiB`,
    );
    console.log(
      `  scheduler CPU         ${schedCpuS.toFixed(1)} s over ${loadS.toFixed(1)} s = ${((100 * schedCpuS) / loadS).toFixed(0)}% of a core (${schedSysS.toFixed(1)} s in the kernel; main thread ${schedMainS.toFixed(1)} s on a CPU, ${mainWaitS.toFixed(1)} s runnable but waiting for one); busiest second main thread ${(100 * mainMax).toFixed(0)}% (${mainHot}/${full.length} s at >= 90%); ${totalCpu.toFixed(1)} s in all, exit ${code}`,
    );
    console.log(
      `  scheduler event loop  utilisation ${probeLoad.eluPct.toFixed(0)}% over the load phase, busiest second ${eluMax.toFixed(0)}% (${eluHot}/${full.length} s at >= 90%); loop delay p50 ${probeLoad.delayP50Ms.toFixed(1)} ms, p99 ${probeLoad.delayP99Ms.toFixed(1)} ms, max ${probeLoad.delayMaxMs.toFixed(0)} ms -> ${eluHot > 0 || mainHot > 0 ? "CPU-bound (event loop saturated)" : "not CPU-bound"}`,
    );
    console.log(
      `  client CPU            ${clientCpuS.toFixed(1)} s = ${((100 * clientCpuS) / loadS).toFixed(0)}% of a core, busiest second ${(100 * clientMax).toFixed(0)}%, ${clientHot}/${full.length} s at >= 90%/worker; event-loop delay p99 ${Math.max(...results.map((r) => r.loopDelayP99Ms)).toFixed(1)} ms, max ${Math.max(...results.map((r) => r.loopDelayMaxMs)).toFixed(1)} ms`,
    );
    console.log(
      `  machine               ${(100 * machineBusy).toFixed(0)}% of ${cores} cores busy over the load phase; other processes (not scheduler, client, bench) ${(100 * Math.max(0, othersCores)).toFixed(0)}% of a core${othersCores > 0.15 ? " -- the machine was not quiet, figures are skewed" : ""}; ${(100 * machineSteal).toFixed(1)}% stolen by the hypervisor`,
    );
    const errors = merge((r) => r.errors);
    if (Object.keys(errors).length) console.log(`  client errors         ${fmtMap(errors)}`);
    console.log(`  scheduler log         ${logSummary(sched.logFile)}`);
    if (timeline) {
      // Decision latency of the registrations sent in each second.
      const latBySec: number[][] = [];
      for (const r of results) r.regLat.forEach((ms, j) => (latBySec[r.regSentSec[j]!] ??= []).push(ms));
      const latCol = (k: number) => {
        const xs = (latBySec[k] ?? []).sort((a, b) => a - b);
        return xs.length === 0 ? "-" : `${percentile(xs, 0.5).toFixed(0)}/${percentile(xs, 0.99).toFixed(0)}`;
      };
      console.log("  timeline    t   reg/s  resp/s   req/s  sched%  main%  runq%  ELU%  timers-late  client%  others%  RSS MiB  reg p50/p99 ms");
      perSec.forEach((s, k) => {
        console.log(
          `           ${s.t.toFixed(0).padStart(3)} ${String(secRegs[k] ?? 0).padStart(7)} ${String(secResps[k] ?? 0).padStart(7)} ${String(secReqs[k] ?? 0).padStart(7)} ${(100 * s.sched).toFixed(0).padStart(7)} ${(100 * s.main).toFixed(0).padStart(6)} ${(100 * s.wait).toFixed(0).padStart(6)} ${(s.tick ? s.tick.eluPct.toFixed(0) : "-").padStart(5)} ${(s.tick ? s.tick.lateMs.toFixed(0) : "no tick").padStart(10)} ${(100 * s.client).toFixed(0).padStart(8)} ${(100 * s.machine.others).toFixed(0).padStart(8)} ${mib(s.rss).padStart(8)}  ${latCol(k).padStart(14)}`,
        );
      });
    }
    if (cpuProfDir) {
      const profs = readdirSync(cpuProfDir).filter((f) => f.endsWith(".cpuprofile") && f.includes(`.${pid}.`));
      if (profs.length === 0) console.log(`  no CPU profile for pid ${pid} in ${cpuProfDir}`);
      for (const f of profs) for (const line of summarizeProfile(join(cpuProfDir, f), 25)) console.log(`  ${line}`);
    }
  } finally {
    clearTimeout(watchdog);
    if (sampler) clearInterval(sampler);
    for (const w of workers) if (w.exitCode === null) w.kill("SIGKILL");
    await sched.stop();
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const f of readdirSync(dir)) writeFileSync(join(keep, f), readFileSync(join(dir, f)));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes("--worker")) workerMain();
else await main();

// The decision-time histogram a scheduler exposes on --metrics-listen:
// bucket upper bounds (seconds) with cumulative counts.
async function decisionHistogram(port: number): Promise<{ count: number; le(q: number): number; share(le: number): number } | undefined> {
  let text: string;
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    text = await res.text();
  } catch {
    return undefined;
  }
  const buckets: Array<[number, number]> = [];
  for (const m of text.matchAll(/^damselfly_scheduler_decision_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/gm))
    buckets.push([m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])]);
  const count = buckets.length > 0 ? buckets[buckets.length - 1]![1] : 0;
  if (count === 0) return undefined;
  return {
    count,
    le: (q) => buckets.find(([, c]) => c >= q * count)?.[0] ?? Infinity,
    share: (le) => (buckets.find(([b]) => b >= le)?.[1] ?? count) / count,
  };
}

function fmtLe(s: number): string {
  return s === Infinity ? "inf" : s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s} s`;
}
