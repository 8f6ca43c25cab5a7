// Multi-host swarm testbed: the same file to N peers over shaped links, by
// plain HTTP (native), BitTorrent (opentracker + aria2c) and Damselfly, each
// compared with the Kumar-Ross bound. Needs root, iproute2, curl, aria2,
// mktorrent and opentracker (Debian packages).
//
//   node dist/bench/testbed/run.js --peers 16 --size 128MiB --peer-rate 25mbit \
//       --origin-rate 50mbit --modes native,bittorrent,damselfly --out /tmp/tb
//
// --peers takes a list (4,8,16: one testbed with the most peers, each N runs
// on the first N); an SVG plot of completion time vs N is written too.
// --modes may also name damselfly-peer (the scheduler with --cold-start peer)
// and damselfly-proxy (curl through each daemon's HTTP proxy instead of
// `damselfly get`), damselfly-tls (mutual TLS, signed piece digests) and
// damselfly-chaos (two schedulers and two seeds; the task's scheduler is
// SIGKILLed when the origin has sent 25% of the file, the seed fetching it
// at 50%: mode-chaos.ts; --chaos-at 0.25,0.5 moves the two points).
// --dir is where the file and the downloads go (default the system temp dir),
// --keep keeps them, --no-shaping-check skips the link checks. Before each
// run it waits up to --idle-wait seconds (60) for the machine to be idle
// (under 15 % busy), and says so when it was not.
// --seed-api-loopback binds the seed daemon's API to 127.0.0.1 as README's
// cluster example does (the scheduler then cannot trigger it).
// --daemon-args, --seed-args and --scheduler-args add flags (space-separated)
// to every peer daemon, the seed daemon and the scheduler, for experiments;
// --get-args adds flags to every `damselfly get`;
// --daemon-node-args adds Node flags to the daemons (e.g. '--cpu-prof
// --cpu-prof-dir=/tmp/prof').
// --warm-up SIZE (Damselfly modes): before the clock, every peer downloads
// the file's first SIZE bytes as a task of its own through the same swarm,
// so the measured download runs on daemons that have served one before, as
// deployed daemons have (V8 has compiled the hot paths). The origin's bytes
// for it are not counted.
//
// Model modes (mode-model.ts): damselfly-hf, damselfly-s3 (`get -r` from the
// Hub or S3 fixture on the origin host) and native-hf, native-s3 (curl
// straight from it); --size is then the whole model, in --model-files files.
//
// --tcp-cc NAME|inherit: TCP congestion control inside the hosts (default
// cubic, Linux's default; the machine's own default may differ, and bbr
// against the shapers' short queues makes TCP resend far more, so results
// depended on the machine).
//
// Every run is bounded (10 T* + 60 s, or twice the client-server time + 60 s
// when longer); the testbed (namespaces dftb-*, veths dftbv-*, bridge dftb0,
// addresses 10.214.0.0/16) is removed at the end, on failure, on Ctrl-C, and
// at start if a crashed earlier run left it behind.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { cpus, release, tmpdir } from "node:os";
import { join } from "node:path";
import { parseBytes } from "../../src/common/config.js";
import { makeFile } from "../make-file.js";
import { kumarRoss, runTimeoutS } from "./bound.js";
import { bittorrentMode } from "./mode-bittorrent.js";
import { CHAOS_DEFAULTS, damselflyChaosMode } from "./mode-chaos.js";
import { damselflyMode } from "./mode-damselfly.js";
import { nativeMode } from "./mode-native.js";
import { modelModes, type ModelHolder } from "./mode-model.js";
import { prepareModel } from "./model.js";
import { measureMode, type Mode, type RunMeasurement } from "./mode.js";
import { renderPlot } from "./plot.js";
import { cpuAccount, cpuSampler, killAll, removeStaleCgroups, sleep } from "./proc.js";
import { boundLine, detailLines, linkUseLine, mbit, resultsTable, shapingLines, startLine, type ResultRow } from "./report.js";
import { checkShaping, type ShapingCheck } from "./shaping.js";
import { cleanupLeftovers, createTestbed, MAX_PEERS, type Testbed } from "./topology.js";

// Binary -> Debian package, per mode.
const TOOLS: Record<string, Record<string, string>> = {
  common: { ip: "iproute2", tc: "iproute2", ss: "iproute2", sysctl: "procps", bash: "bash", curl: "curl" },
  bittorrent: { aria2c: "aria2", mktorrent: "mktorrent", opentracker: "opentracker" },
};

function usage(msg?: string): never {
  if (msg) process.stderr.write(`testbed: ${msg}\n`);
  process.stderr.write(
    "usage: node dist/bench/testbed/run.js [--peers 16|4,8,16] [--size 128MiB] [--peer-rate 25mbit] [--origin-rate 50mbit]\n" +
      "         [--modes native,bittorrent,damselfly[,damselfly-peer,damselfly-proxy,damselfly-tls]] [--out DIR] [--dir WORKDIR] [--keep] [--no-shaping-check]\n" +
      "         [--seed-api-loopback] [--idle-wait 60] [--daemon-args '...'] [--seed-args '...'] [--scheduler-args '...'] [--daemon-node-args '...'] [--warm-up 32MiB] [--get-args '...'] [--tcp-cc cubic|inherit]\n",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Record<string, string | true> {
  const o: Record<string, string | true> = {};
  const valued = new Set([
    "--peers",
    "--size",
    "--peer-rate",
    "--origin-rate",
    "--modes",
    "--out",
    "--dir",
    "--idle-wait",
    "--daemon-args",
    "--seed-args",
    "--scheduler-args",
    "--daemon-node-args",
    "--warm-up",
    "--get-args",
    "--tcp-cc",
    "--chaos-at",
    "--model-files",
  ]);
  const flags = new Set(["--keep", "--no-shaping-check", "--seed-api-loopback", "--help", "-h"]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (valued.has(a)) {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      o[a] = argv[++i]!;
    } else if (flags.has(a)) o[a] = true;
    else usage(`unknown argument ${JSON.stringify(a)}`);
  }
  return o;
}

// tc-style rates: 25mbit, 500kbit, 1gbit, 1000000bit (SI, bits per second).
export function parseRate(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$/i.exec(s.trim());
  if (!m) usage(`bad rate ${JSON.stringify(s)} (e.g. 25mbit, 500kbit, 1gbit)`);
  const mult: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };
  const v = Math.round(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
  if (v < 8_000) usage(`rate ${s} is too low`);
  return v;
}

function missingTools(modes: string[]): string[] {
  const need: Record<string, string> = { ...TOOLS.common };
  for (const m of modes) Object.assign(need, TOOLS[m] ?? {});
  const missing = new Set<string>();
  for (const [bin, pkg] of Object.entries(need)) {
    try {
      execFileSync("bash", ["-c", `command -v ${bin}`], { stdio: "ignore" });
    } catch {
      missing.add(pkg);
    }
  }
  return [...missing];
}

const args = parseArgs(process.argv.slice(2));
if (args["--help"] || args["-h"]) usage();
const str = (k: string, def: string) => (typeof args[k] === "string" ? (args[k] as string) : def);
const peersList = str("--peers", "16")
  .split(",")
  .map((x) => Number(x.trim()));
if (peersList.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_PEERS)) usage(`--peers: integers 1..${MAX_PEERS}, comma-separated`);
const ns = [...new Set(peersList)].sort((a, b) => a - b);
let size: number;
try {
  size = parseBytes(str("--size", "128MiB"));
} catch (e) {
  usage((e as Error).message);
}
if (size < 1) usage("--size must be positive");
const peerRate = parseRate(str("--peer-rate", "25mbit"));
const originRate = parseRate(str("--origin-rate", "50mbit"));
const words = (flag: string): string[] => str(flag, "").split(/\s+/).filter(Boolean);
const dfOpts = {
  seedApiLoopback: args["--seed-api-loopback"] === true,
  daemonArgs: words("--daemon-args"),
  seedArgs: words("--seed-args"),
  schedulerArgs: words("--scheduler-args"),
  daemonNodeArgs: words("--daemon-node-args"),
  getArgs: words("--get-args"),
  warmUpBytes: 0,
};
try {
  dfOpts.warmUpBytes = parseBytes(str("--warm-up", "0"));
} catch (e) {
  usage(`--warm-up: ${(e as Error).message}`);
}
const chaosAt = str("--chaos-at", `${CHAOS_DEFAULTS.schedulerAt},${CHAOS_DEFAULTS.seedAt}`)
  .split(",")
  .map((x) => Number(x.trim()));
if (chaosAt.length !== 2 || chaosAt.some((x) => !(x > 0 && x < 1))) usage("--chaos-at: two fractions of the file, 0..1, e.g. 0.25,0.5");
const MODES: Record<string, Mode> = {
  native: nativeMode,
  bittorrent: bittorrentMode,
  damselfly: damselflyMode("damselfly", undefined, dfOpts),
  "damselfly-peer": damselflyMode("damselfly-peer", "peer", dfOpts),
  "damselfly-proxy": damselflyMode("damselfly-proxy", undefined, { ...dfOpts, client: "proxy" }),
  "damselfly-tls": damselflyMode("damselfly-tls", undefined, { ...dfOpts, tls: true }),
  "damselfly-chaos": damselflyChaosMode("damselfly-chaos", dfOpts, { schedulerAt: chaosAt[0]!, seedAt: chaosAt[1]! }),
};
const modelHolder: ModelHolder = {};
const MODEL_MODES = modelModes(modelHolder, dfOpts);
Object.assign(MODES, MODEL_MODES);
const modelFiles = Number(str("--model-files", "4"));
if (!Number.isInteger(modelFiles) || modelFiles < 1 || modelFiles > 64) usage("--model-files: 1..64");
const modeNames = str("--modes", "native,bittorrent,damselfly")
  .split(",")
  .map((m) => m.trim())
  .filter(Boolean);
for (const m of modeNames) if (!MODES[m]) usage(`unknown mode ${JSON.stringify(m)} (${Object.keys(MODES).join(", ")})`);
const outDir = str("--out", join(tmpdir(), "damselfly-testbed"));
const keep = args["--keep"] === true;
const idleWaitS = Number(str("--idle-wait", "60"));
if (!Number.isFinite(idleWaitS) || idleWaitS < 0 || idleWaitS > 3600) usage("--idle-wait: seconds, 0..3600");

// Waits (bounded) until the machine is under 15 % busy over one second;
// returns the last busy share seen.
async function waitIdle(maxS: number): Promise<number> {
  let busy = 1;
  const end = performance.now() + maxS * 1000;
  for (let i = 0; i < 3600; i++) {
    const s = cpuSampler();
    await sleep(1_000);
    busy = s.stop().mean;
    if (busy < 0.15 || performance.now() >= end) break;
  }
  return busy;
}

if (process.getuid?.() !== 0) usage("needs root (network namespaces, veths, tc)");
const missing = missingTools(modeNames);
if (missing.length) usage(`missing tools: apt-get install -y ${missing.join(" ")}`);
// The children's configuration comes from their flags only.
for (const k of Object.keys(process.env)) if (k.startsWith("DAMSELFLY_")) delete process.env[k];

// One testbed at a time: a second run would tear down the first one's
// namespaces as "leftovers".
const LOCK = "/run/lock/damselfly-testbed.pid";
try {
  const other = Number(readFileSync(LOCK, "utf8").trim());
  if (other && other !== process.pid && readFileSync(`/proc/${other}/cmdline`, "utf8").includes("testbed/run")) {
    usage(`another testbed run (pid ${other}) is in progress`);
  }
} catch {
  // no lock, or its process is gone
}
writeFileSync(LOCK, String(process.pid));
process.on("exit", () => {
  try {
    if (readFileSync(LOCK, "utf8").trim() === String(process.pid)) unlinkSync(LOCK);
  } catch {
    // gone
  }
});

mkdirSync(join(outDir, "logs"), { recursive: true });
const work = mkdtempSync(join(str("--dir", tmpdir()), "dftb-work-"));

removeStaleCgroups();
const account = cpuAccount();
process.on("exit", () => account?.release());
let tb: Testbed | undefined;
let cleaning: Promise<void> | undefined;
let aborted = false;
async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    killAll();
    await (tb ? tb.teardown() : cleanupLeftovers()).catch((e: Error) => process.stderr.write(`testbed: cleanup: ${e.message}\n`));
    if (!keep) rmSync(work, { recursive: true, force: true });
    account?.release();
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => {
    aborted = true;
    process.stderr.write(`\ntestbed: ${sig}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

const results: { startedAt: string; command: string; config: Record<string, unknown>; shaping: ShapingCheck[]; runs: Array<Record<string, unknown>> } = {
  startedAt: new Date().toISOString(),
  command: process.argv.slice(1).join(" "),
  config: {
    peers: ns,
    ...dfOpts,
    sizeBytes: size,
    peerRateBps: peerRate,
    originRateBps: originRate,
    modes: modeNames,
    cpus: cpus().length,
    kernel: release(),
    workDir: work,
  },
  shaping: [],
  runs: [],
};
const resultsFile = join(outDir, "results.json");
const save = () => writeFileSync(resultsFile, JSON.stringify(results, null, 2) + "\n");
const rows: ResultRow[] = [];
let exitCode = 0;

try {
  await cleanupLeftovers();
  const file = join(work, "blob.bin");
  let digest = "";
  if (modeNames.some((m) => !MODEL_MODES[m])) {
    process.stdout.write(`testbed: writing ${size} random bytes to ${file}\n`);
    digest = await makeFile(file, size, `testbed-${Date.now()}`);
  }
  if (modeNames.some((m) => MODEL_MODES[m])) {
    process.stdout.write(`testbed: writing a ${size}-byte model in ${modelFiles} files to ${join(work, "model")}\n`);
    modelHolder.model = await prepareModel(join(work, "model"), size, modelFiles);
    size = modelHolder.model.size;
  }
  const maxN = ns[ns.length - 1]!;
  tb = await createTestbed(maxN, peerRate, originRate, { congestionControl: str("--tcp-cc", "cubic") });
  results.config["tcpCongestionControl"] = tb.congestionControl;
  process.stdout.write(
    `testbed: bridge dftb0, origin 10.214.0.1 (${mbit(originRate)} up/down), ${maxN} peers 10.214.0.10.. (${mbit(peerRate)} up/down), TCP ${tb.congestionControl}\n`,
  );
  if (args["--no-shaping-check"] !== true) {
    const checkDir = join(work, "shaping");
    mkdirSync(checkDir);
    results.shaping = await checkShaping(tb, checkDir, join(outDir, "logs"));
    process.stdout.write(`shaping check (one transfer per link direction, curl over HTTP):\n${shapingLines(results.shaping).join("\n")}\n`);
    rmSync(checkDir, { recursive: true, force: true });
    save();
  }
  for (const n of ns) {
    const bound = kumarRoss(size, n, originRate, peerRate, peerRate);
    const timeoutS = runTimeoutS(bound);
    process.stdout.write(`\n${boundLine(bound, n, size, originRate, peerRate, peerRate)}; time limit per run ${timeoutS.toFixed(0)} s\n`);
    for (const m of modeNames) {
      const tag = `N${n}-${m}`;
      const workDir = join(work, tag);
      const logDir = join(outDir, "logs", tag);
      mkdirSync(workDir, { recursive: true });
      rmSync(logDir, { recursive: true, force: true });
      mkdirSync(logDir, { recursive: true });
      const busy = await waitIdle(idleWaitS);
      process.stdout.write(
        `[${tag}] running...${busy >= 0.15 ? ` (the machine is ${Math.round(busy * 100)}% busy with something else after waiting ${idleWaitS} s)` : ""}\n`,
      );
      let run: RunMeasurement;
      try {
        run = await measureMode(MODES[m]!, { tb, peers: tb.peers.slice(0, n), file, size, digest, workDir, logDir, ...(account ? { account } : {}) }, timeoutS);
      } catch (e) {
        if (aborted) await new Promise<never>(() => undefined);
        // Setup failed (a server did not start): report it, go on with the next mode.
        const msg = e instanceof Error ? e.message : String(e);
        process.stdout.write(`[${tag}] FAILED: ${msg}\n`);
        results.runs.push({ mode: m, n, error: msg, bound, logDir });
        save();
        exitCode = 1;
        continue;
      }
      if (aborted) await new Promise<never>(() => undefined); // the signal handler exits
      rows.push({ run, bound });
      results.runs.push({ ...run, bound, logDir });
      save();
      const use = [linkUseLine(run, peerRate), startLine(run, peerRate)].filter((x) => x !== undefined);
      process.stdout.write(
        `${resultsTable([{ run, bound }]).split("\n").slice(2).join("\n")}\n${detailLines(run).join("\n")}\n${use.map((l) => `    ${l}\n`).join("")}`,
      );
      if (run.completed < n) exitCode = 1;
      if (!keep) rmSync(workDir, { recursive: true, force: true });
      await sleep(1_000);
    }
  }
  process.stdout.write(
    `\nResults (S=${size} B; rates: origin ${mbit(originRate)}, peers ${mbit(peerRate)} up and down; ${cpus().length} CPUs):\n${resultsTable(rows)}\n`,
  );
  process.stdout.write(
    "  T*: Kumar-Ross bound; last/median: completion since the clock started; origin egress: bytes the origin host sent (interface, headers incl.);\n" +
      "  HTTP origin: file bytes its HTTP server sent (incl. to a seed on the same host); CPU busy: whole machine from /proc/stat (mean, max 1 s);\n" +
      "  agent CPU: the processes moving the file (curl + origin server | aria2c seeder + leechers | damselfly seed + peer daemons);\n" +
      "  CPU s/GiB up: agent CPU per GiB sent by all testbed hosts together (swarm up); user s/GiB: its user-mode part\n" +
      "  (system time also holds the shaping's softirq work, which the kernel charges to whatever process it interrupts).\n",
  );
  {
    const title = `${(size / 2 ** 20).toFixed(0)} MiB to N peers: origin ${mbit(originRate)}, peers ${mbit(peerRate)}`;
    const svg = renderPlot(
      title,
      rows.map((r) => ({ mode: r.run.mode, n: r.run.n, lastS: r.run.lastS, medianS: r.run.medianS })),
      ns.map((n) => ({ n, tStarS: kumarRoss(size, n, originRate, peerRate, peerRate).tStarS })),
    );
    writeFileSync(join(outDir, "plot.svg"), svg);
    process.stdout.write(`plot: ${join(outDir, "plot.svg")}\n`);
  }
  process.stdout.write(`results: ${resultsFile}; logs: ${join(outDir, "logs")}\n`);
} catch (e) {
  process.stderr.write(`testbed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  exitCode = 1;
} finally {
  save();
  await cleanup();
}
process.exit(exitCode);
