// containerd pulling a multi-layer image (ctr images pull, real containerd,
// real docker-registry, all on 127.0.0.1), three ways per round:
//   direct: containerd A -> registry (hosts.toml: server = the registry);
//           also containerd B ("direct B"), the yardstick for warm, which B
//           pulls (two containerd instances need not be equally fast);
//   cold:   containerd A -> peer 1's mirror -> swarm (seed fetches from the
//           registry once) -- a fresh swarm every round;
//   warm:   containerd B -> peer 2's mirror -> swarm (peer 1 and the seed
//           hold the layers; peer 2 holds nothing).
//   node dist/bench/containerd-pull.js [--size 500MiB] [--layers 5] [--rounds 3]
//        [--snapshotter overlayfs] [--dir DIR] [--pull-timeout 10m] [--timeout 60m]
//        [--cpu-prof DIR]
// Each pull downloads and unpacks everything: the image is removed from
// containerd (ctr images rm --sync) after every pull. The registry's access
// log proves which path the bytes took (blob bytes sent per pull). The
// daemons run on new empty data dirs each round (a new cluster), so "cold"
// is cold. Figures are whole-process wall times of `ctr images pull`.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseBytes, parseDuration } from "../src/common/config.js";
import { startCluster, type Cluster, type DaemonHandle } from "../test/helpers/cluster.js";
import { startContainerd, writeHostsToml, type Containerd } from "../test/helpers/containerd.js";
import { makeOciImage, pushImage } from "../test/helpers/oci-image.js";
import { runDamselfly, type LogLine } from "../test/helpers/procs.js";
import { startRegistry, type AccessEntry, type Registry } from "../test/helpers/registry.js";
import { startThrottle, type Throttle } from "../test/helpers/throttle.js";
import { median, mibps, opt, peakRss, run, workerPid } from "./lib.js";

const size = parseBytes(opt("--size", "500MiB"));
const layerCount = Number(opt("--layers", "5"));
const rounds = Number(opt("--rounds", "3"));
const snapshotter = opt("--snapshotter", "overlayfs");
const pullTimeoutMs = parseDuration(opt("--pull-timeout", "10m"));
const totalTimeoutMs = parseDuration(opt("--timeout", "60m"));
// Write V8 CPU profiles of the scheduler and daemons here (written when they stop).
const cpuProf = opt("--cpu-prof", "");
// Emulates a remote registry: its egress (all clients together) limited to
// this many bytes/s by a forwarder in front of it (0: loopback speed).
const registryRate = parseBytes(opt("--registry-rate", "0"));
// Short: containerd's socket path must fit in sun_path.
const dir = mkdtempSync(join(opt("--dir", tmpdir()), "dfcp-"));

const MiB = 2 ** 20;
const fmtMiB = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

let registry: Registry | undefined;
let throttle: Throttle | undefined;
const containerds: Containerd[] = [];
let cluster: Cluster | undefined;
// Stops whatever was started and removes the data; safe to run again (every
// stop is idempotent), and serialised.
let cleaning: Promise<void> = Promise.resolve();
const cleanup = () =>
  (cleaning = cleaning.then(async () => {
    for (const c of containerds) await c.stop().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    await throttle?.stop().catch(() => undefined);
    await registry?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }));
// Everything is bounded: past --timeout (or on SIGINT/SIGTERM) the processes
// are stopped, which makes the run fail fast; once it has stopped (at most
// 30 s more), anything it started meanwhile is stopped too, then exit.
let aborted = false;
let mainDone: () => void = () => undefined;
const mainSettled = new Promise<void>((resolve) => (mainDone = resolve));
const abort = async (why: string, code: number) => {
  if (aborted) return;
  aborted = true;
  console.error(`containerd-pull: ${why}; cleaning up`);
  await cleanup();
  await Promise.race([mainSettled, new Promise((r) => setTimeout(r, 30_000).unref())]);
  await cleanup();
  process.exit(code);
};
const live = () => {
  if (aborted) throw new Error("containerd-pull: aborted");
};
const watchdog = setTimeout(() => void abort(`not done within ${sec(totalTimeoutMs)}`, 2), totalTimeoutMs);
watchdog.unref();
for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => void abort(sig, 130));

// Blob bytes the registry sent (200/206 GETs of any /v2/<name>/blobs/<digest>).
function blobBytes(entries: readonly AccessEntry[]): number {
  let n = 0;
  for (const e of entries)
    if (e.method === "GET" && (e.status === 200 || e.status === 206) && /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/.test(e.path)) n += e.bytes;
  return n;
}

// [user, system] CPU seconds of a process so far; with children, of its
// waited-for children instead (around one pull, for this process that is ctr:
// ctr images pull, then ctr images check).
function cpuUserSys(pid: number | "self", children = false): [number, number] {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  const i = children ? 13 : 11;
  return [Number(f[i]) / 100, Number(f[i + 1]) / 100];
}

// Node refuses --cpu-prof in NODE_OPTIONS, and the cluster helper spawns
// `node bin/damselfly`: a preload module (--import is allowed) runs the
// inspector's profiler and writes <dir>/<pid>.cpuprofile when the process
// exits (the daemons exit through process.exit on SIGTERM).
function profPreload(outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const file = join(dir, `prof-preload-${outDir.replace(/[^a-z0-9]/gi, "_")}.mjs`);
  writeFileSync(
    file,
    [
      'import { Session } from "node:inspector";',
      'import { writeFileSync } from "node:fs";',
      "const s = new Session();",
      "s.connect();",
      's.post("Profiler.enable");',
      's.post("Profiler.setSamplingInterval", { interval: 1000 });',
      's.post("Profiler.start");',
      'process.on("exit", () => s.post("Profiler.stop", (err, r) => { if (!err) writeFileSync(' +
        JSON.stringify(outDir + "/") +
        ' + process.pid + ".cpuprofile", JSON.stringify(r.profile)); }));',
    ].join("\n") + "\n",
  );
  return file;
}

// A Go time.Duration string ("1m2.5s", "850.1ms", "2.05s") in seconds.
function goDuration(d: string): number {
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, µs: 1e-6, us: 1e-6, ns: 1e-9 };
  let t = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|µs|us|ns)/g)) t += Number(m[1]) * unit[m[2]!]!;
  return t;
}

function ctrPhases(stdout: string): { fetchS: number; unpackS: number } {
  const elapsed = [...stdout.matchAll(/elapsed: (\d+(?:\.\d+)?) s/g)].pop();
  const done = /\ndone: (\S+)/.exec(stdout);
  return { fetchS: elapsed ? Number(elapsed[1]) : NaN, unpackS: done ? goDuration(done[1]!) : NaN };
}

const logsAfter = (d: DaemonHandle, msg: string, since: number): LogLine[] => d.proc.logs.filter((l) => l.msg === msg && Date.parse(String(l.time)) >= since);
const at = (l: LogLine) => Date.parse(String(l.time));

interface PullFigures {
  ms: number;
  // From ctr's own output: the last "elapsed: X s" of its progress display
  // (the fetch phase, 0.1 s resolution) and "done: <duration>" (the unpack).
  fetchS: number;
  unpackS: number;
  // CPU seconds used during the pull, per process.
  cpu: Record<string, [number, number]>;
  registryBlobBytes: number;
  registryRequests: number;
}

// Where a P2P pull's time went, from the daemons' log lines; times are
// seconds after `ctr images pull` started.
interface Timeline {
  // The first blob request reached the mirror (manifest and config done).
  firstBlobAt: number;
  // The seed's origin fetches: first "fetching from the origin" .. last "task downloaded".
  seedOrigin: [number, number] | undefined;
  // The mirror's peer finished downloading its last task (store complete).
  peerDoneAt: number;
  // The last blob response ended (containerd's fetch phase is over).
  lastServedAt: number;
  // ctr exited (after unpacking into snapshots).
  endAt: number;
  servedMs: number[];
  bytesFromPeers: number;
  bytesFromSource: number;
  fallbackBytes: number;
  cache: string[];
}

function timeline(peer: DaemonHandle, seed: DaemonHandle | undefined, start: number, end: number): Timeline {
  const rel = (t: number) => (t - start) / 1000;
  const served = logsAfter(peer, "proxy: served from P2P", start);
  const lastServed = Math.max(start, ...served.map(at));
  const firstBlob = Math.min(end, ...served.map((l) => at(l) - Number(l["ms"])));
  let seedOrigin: [number, number] | undefined;
  if (seed) {
    const s0 = logsAfter(seed, "fetching from the origin", start).map(at);
    const s1 = logsAfter(seed, "task downloaded", start).map(at);
    if (s0.length && s1.length) seedOrigin = [rel(Math.min(...s0)), rel(Math.max(...s1))];
  }
  const peerDone = logsAfter(peer, "task downloaded", start).map(at);
  const sum = (k: string) => served.reduce((a, l) => a + Number(l[k] ?? 0), 0);
  return {
    firstBlobAt: rel(firstBlob),
    seedOrigin,
    peerDoneAt: peerDone.length ? rel(Math.max(...peerDone)) : NaN,
    lastServedAt: rel(lastServed),
    endAt: rel(end),
    servedMs: served.map((l) => Number(l["ms"])),
    bytesFromPeers: sum("bytesFromPeers"),
    bytesFromSource: sum("bytesFromSource"),
    fallbackBytes: sum("fallbackBytes"),
    cache: served.map((l) => String(l["cache"])),
  };
}

function describe(t: Timeline): string {
  const f = (x: number) => x.toFixed(2);
  return (
    `timeline s: 1st blob req ${f(t.firstBlobAt)}` +
    (t.seedOrigin ? `, seed origin fetch ${f(t.seedOrigin[0])}-${f(t.seedOrigin[1])}` : "") +
    `, peer store done ${f(t.peerDoneAt)}, last blob served ${f(t.lastServedAt)}, ctr done ${f(t.endAt)} (unpack etc. ${f(t.endAt - t.lastServedAt)})\n` +
    `           ${t.servedMs.length} blobs via P2P (cache ${[...new Set(t.cache)].join("/")}), each ${Math.min(...t.servedMs)}-${Math.max(...t.servedMs)} ms; ` +
    `from peers ${fmtMiB(t.bytesFromPeers)}, from source ${fmtMiB(t.bytesFromSource)}` +
    (t.fallbackBytes ? `, origin fallback ${fmtMiB(t.fallbackBytes)}` : "")
  );
}

try {
  const t00 = performance.now();
  registry = await startRegistry({ dir: join(dir, "registry") });
  const layerSize = Math.floor(size / layerCount);
  const image = await makeOciImage(join(dir, "image"), { layers: Array.from({ length: layerCount }, () => ({ size: layerSize })) });
  const imageBytes = image.totalLayerBytes + image.configSize + image.manifestSize;
  await pushImage(image.layoutDir, `${registry.hostPort}/bench/app:v1`);
  throttle = registryRate > 0 ? await startThrottle({ host: registry.host, port: registry.port }, registryRate) : undefined;
  // Pulls go through the throttle when there is one (the registry ignores Host).
  const pullHost = throttle?.hostPort ?? registry.hostPort;
  const pullUrl = `http://${pullHost}`;
  const ref = `${pullHost}/bench/app:v1`;
  rmSync(image.layoutDir, { recursive: true, force: true });
  console.log(
    `image ${ref}: ${layerCount} layers of ${fmtMiB(layerSize)} random data, ${fmtMiB(image.totalLayerBytes)} of gzip'd layers; ` +
      `built and pushed in ${sec(performance.now() - t00)}; snapshotter ${snapshotter}; ` +
      `registry egress ${registryRate > 0 ? `limited to ${fmtMiB(registryRate)}/s` : "unlimited (loopback)"}; data under ${dir}`,
  );

  live();
  containerds.push(await startContainerd(join(dir, "ca")));
  live();
  containerds.push(await startContainerd(join(dir, "cb")));
  live();
  const [ctrA, ctrB] = containerds as [Containerd, Containerd];
  const directHosts = join(dir, "hosts-direct");
  writeHostsToml(directHosts, pullHost, { server: pullUrl });

  const settle = () => run("sync", []);
  const reg = registry;
  // Processes whose CPU time is reported per pull (besides ctr and containerd).
  let watched: Array<[string, number]> = [];
  const cpuNow = (c: Containerd): Record<string, [number, number]> => {
    const m: Record<string, [number, number]> = { ctr: cpuUserSys("self", true), containerd: cpuUserSys(c.pid), registry: cpuUserSys(reg.pid) };
    for (const [n, pid] of watched) m[n] = cpuUserSys(pid);
    return m;
  };
  const pull = async (c: Containerd, hostsDir: string, what: string): Promise<PullFigures & { start: number; end: number }> => {
    live();
    await settle();
    reg.resetAccessLog();
    const cpu0 = cpuNow(c);
    const start = Date.now();
    const r = await c.pull(ref, { hostsDir, snapshotter, timeoutMs: pullTimeoutMs });
    const end = start + r.elapsedMs;
    const cpu1 = cpuNow(c);
    const cpu = Object.fromEntries(Object.keys(cpu1).map((k) => [k, [cpu1[k]![0] - cpu0[k]![0], cpu1[k]![1] - cpu0[k]![1]] as [number, number]]));
    if (r.code !== 0 || !r.unpacked)
      throw new Error(`${what} pull: ctr exited ${r.code} (unpacked ${r.unpacked}, check "${r.check}")\n${r.stderr}${r.stdout.slice(-2000)}`);
    const entries = await reg.accessLog();
    const figures = { ms: r.elapsedMs, ...ctrPhases(r.stdout), cpu, registryBlobBytes: blobBytes(entries), registryRequests: entries.length, start, end };
    await c.removeImage(ref);
    return figures;
  };

  const direct: PullFigures[] = [];
  const directB: PullFigures[] = [];
  const cold: PullFigures[] = [];
  const warm: PullFigures[] = [];
  const rss: Record<string, number[]> = { seed: [], "peer 1": [], "peer 2": [] };
  const cpuLine = (f: PullFigures) => {
    const total = Object.values(f.cpu).reduce((a, [u, s]) => a + u + s, 0);
    const parts = Object.entries(f.cpu)
      .filter(([, [u, s]]) => u + s >= 0.05)
      .map(([k, [u, s]]) => `${k} ${(u + s).toFixed(1)} (sys ${s.toFixed(1)})`);
    return `cpu s: ${parts.join(", ")}; total ${total.toFixed(1)} s = ${(total / (f.ms / 1000)).toFixed(2)} of ${availableParallelism()} cores`;
  };
  const line = (name: string, f: PullFigures, d: number) =>
    `  ${name.padEnd(6)} ${f.ms.toFixed(0).padStart(7)} ms  ${(f.ms / d).toFixed(2).padStart(5)}x direct  ${mibps(imageBytes, f.ms).padStart(9)}  ` +
    `(ctr: fetch ${f.fetchS.toFixed(1)} s, unpack ${f.unpackS.toFixed(2)} s)  ` +
    `registry blob bytes ${fmtMiB(f.registryBlobBytes).padStart(10)} (${(f.registryBlobBytes / imageBytes).toFixed(2)}x image), ${f.registryRequests} requests\n           ${cpuLine(f)}`;

  for (let r = 0; r < rounds; r++) {
    // A new swarm: new scheduler and daemons on new empty data dirs.
    live();
    const root = join(dir, `swarm${r}`);
    mkdirSync(root);
    cluster = await startCluster({
      peers: 2,
      seed: true,
      dataRoot: root,
      ...(cpuProf ? { env: { NODE_OPTIONS: `--import=${pathToFileURL(profPreload(join(cpuProf, `round${r + 1}`))).href}` } } : {}),
    });
    if (cpuProf)
      console.log(`cpu profiles: ${cluster.daemons.map((h) => `${h.name} pid ${h.proc.pid}`).join(", ")}, scheduler pid ${cluster.scheduler.proc.pid}`);
    live();
    const [p1, p2] = cluster.peers as [DaemonHandle, DaemonHandle];
    const seed = cluster.seed!;
    watched = [
      ["seed", seed.proc.pid],
      ["peer 1", p1.proc.pid],
      ["peer 2", p2.proc.pid],
      ["scheduler", workerPid(cluster.scheduler.proc.pid!)],
    ];
    const hostsFor = async (p: DaemonHandle, name: string) => {
      live();
      const d = join(dir, `hosts-${name}-${r}`);
      const res = await runDamselfly(["init", "containerd", "--config-path", d, "--registry", pullUrl, "--proxy", p.proxyUrl], { timeoutMs: 30_000 });
      if (res.code !== 0) throw new Error(`damselfly init containerd exited ${res.code}: ${res.stderr}`);
      return d;
    };
    const hosts1 = await hostsFor(p1, "p1");
    const hosts2 = await hostsFor(p2, "p2");

    const d = await pull(ctrA, directHosts, "direct");
    direct.push(d);
    const db = await pull(ctrB, directHosts, "direct B");
    directB.push(db);
    const c = await pull(ctrA, hosts1, "cold");
    cold.push(c);
    const w = await pull(ctrB, hosts2, "warm");
    warm.push(w);

    console.log(`round ${r + 1}/${rounds}`);
    console.log(line("direct", d, d.ms));
    console.log(line("dir. B", db, d.ms));
    console.log(line("cold", c, d.ms));
    console.log(`           ${describe(timeline(p1, seed, c.start, c.end))}`);
    console.log(line("warm", w, d.ms));
    console.log(`           ${describe(timeline(p2, seed, w.start, w.end))}`);
    for (const [name, h] of [
      ["seed", seed],
      ["peer 1", p1],
      ["peer 2", p2],
    ] as const)
      rss[name]!.push(peakRss(h.proc.pid));
    for (const h of cluster.daemons) {
      const warns = h.proc.logs.filter((l) => l.level >= 40);
      if (warns.length) console.log(`           ${h.name}: ${warns.length} warnings, first: ${JSON.stringify(warns[0])}`);
    }
    await cluster.stop();
    cluster = undefined;
    rmSync(root, { recursive: true, force: true });
  }

  const md = median(direct.map((f) => f.ms));
  const mdb = median(directB.map((f) => f.ms));
  const mc = median(cold.map((f) => f.ms));
  const mw = median(warm.map((f) => f.ms));
  const mb = (fs: PullFigures[]) => median(fs.map((f) => f.registryBlobBytes));
  console.log(`medians over ${rounds} rounds, ${fmtMiB(imageBytes)} image, ctr images pull wall time (fetch + unpack, ${snapshotter}):`);
  console.log(`  direct ${md.toFixed(0).padStart(7)} ms  ${mibps(imageBytes, md).padStart(9)}  registry sent ${(mb(direct) / imageBytes).toFixed(2)}x image`);
  console.log(
    `  dir. B ${mdb.toFixed(0).padStart(7)} ms  ${mibps(imageBytes, mdb).padStart(9)}  registry sent ${(mb(directB) / imageBytes).toFixed(2)}x image  (containerd B, which pulls warm)`,
  );
  console.log(
    `  cold   ${mc.toFixed(0).padStart(7)} ms  ${mibps(imageBytes, mc).padStart(9)}  registry sent ${(mb(cold) / imageBytes).toFixed(2)}x image  = ${(mc / md).toFixed(2)}x direct (target <= 1.1x)`,
  );
  console.log(
    `  warm   ${mw.toFixed(0).padStart(7)} ms  ${mibps(imageBytes, mw).padStart(9)}  registry sent ${(mb(warm) / imageBytes).toFixed(2)}x image  = ${(mw / md).toFixed(2)}x direct, ${(mw / mdb).toFixed(2)}x direct B (target < 1x)`,
  );
  console.log(
    `  peak RSS (max over rounds): ${Object.entries(rss)
      .map(([n, v]) => `${n} ${(Math.max(...v) / MiB).toFixed(0)} MiB`)
      .join(", ")}`,
  );
} finally {
  clearTimeout(watchdog);
  await cleanup();
  mainDone();
}
