// Bounded memory for one large file (issue 21, item 7): a daemon's peak RSS
// while it moves one SIZE file (default 10 GiB) from an origin, by each path
// a workload uses. All processes on loopback, no shaping.
//   node dist/bench/large-file-rss.js [--size 10GiB] [--dir DIR] [--paths get,proxy] [--limit-mib 200]
// The file is sparse (a hole of SIZE bytes: zeros the kernel makes without
// touching the disk), so it is never written nor held in memory; the daemon
// still stores and hashes every byte. Each path runs on a fresh scheduler-
// less-seed cluster: a scheduler with --cold-start peer and one daemon (its
// own data directory, removed after), so the daemon fetches from the origin
// itself and its VmHWM is that path's alone:
//   get:   `damselfly get URL -O FILE`   (the output removed after)
//   stdout: `damselfly get URL -O -` to /dev/null (stream delivery)
//   proxy: curl through the daemon's HTTP proxy, a proxy rule sending the
//          origin's URL through P2P (the registry mirror's path too), to /dev/null
//   cache: `cache import FILE --replicas 0`, then `cache export ID -O FILE`
//          on the same daemon (the import streams every byte to it).
// The daemon's RSS is sampled every 250 ms (VmRSS) and its VmHWM read at the
// end; the path passes when the peak is under --limit-mib. Exit 1 if any fails.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, closeSync, ftruncateSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBytes } from "../src/common/config.js";
import { BIN, opt, cpuSeconds, peakRss, spawnDamselfly, startOrigin, type Proc } from "./lib.js";
import { loopbackDaemonArgs } from "../test/helpers/procs.js";

const size = parseBytes(opt("--size", "10GiB"));
const limitMiB = Number(opt("--limit-mib", "200"));
const paths = opt("--paths", "get,proxy").split(",").filter(Boolean);
const base = mkdtempSync(join(opt("--dir", tmpdir()), "df-bench-large-"));
const MiB = 2 ** 20;
const file = join(base, "large.bin");

interface PathResult {
  path: string;
  ok: boolean;
  seconds: number;
  peakRssMiB: number;
  sampledMaxMiB: number;
  cpuS: number;
  clientPeakMiB: number;
  note: string;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

// Runs a client to completion (bounded), sampling the daemon's and the
// client's RSS meanwhile.
function runSampled(cmd: string, args: string[], daemonPid: number, timeoutMs: number) {
  return new Promise<{ code: number | null; stderr: string; daemonMax: number; clientMax: number }>((resolve) => {
    const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let daemonMax = 0;
    let clientMax = 0;
    c.stderr!.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
    const tick = setInterval(() => {
      daemonMax = Math.max(daemonMax, rssOf(daemonPid));
      if (c.pid) clientMax = Math.max(clientMax, rssOf(c.pid));
    }, 250);
    const kill = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
    c.on("exit", (code) => {
      clearInterval(tick);
      clearTimeout(kill);
      resolve({ code, stderr, daemonMax, clientMax });
    });
  });
}

// The client command of each path, given the daemon's API and proxy, the
// origin URL and a scratch directory.
type PathCommand = (d: { api: string; proxy: string; url: string; dir: string }) => { cmd: string; args: string[] };
const COMMANDS: Record<string, PathCommand> = {
  get: ({ api, url, dir }) => ({ cmd: process.execPath, args: [BIN, "get", url, "-O", join(dir, "out.bin"), "--daemon", api, "--no-progress"] }),
  // `get -O -`: the daemon streams the bytes over the API (stream delivery,
  // also what `cache export` falls back to when the store file is out of reach).
  stdout: ({ api, url }) => ({ cmd: process.execPath, args: [BIN, "get", url, "-O", "-", "--daemon", api, "--no-progress"] }),
  proxy: ({ proxy, url }) => ({ cmd: "curl", args: ["-sS", "-f", "--proxy", `http://${proxy}`, "-o", "/dev/null", url] }),
  // `cache import FILE` (streamed to the daemon over ImportTask), then
  // `cache export ID -O FILE` on the same daemon: both steps sampled.
  cache: ({ api, dir }) => ({
    cmd: "sh",
    args: [
      "-c",
      `id=$("${process.execPath}" "${BIN}" cache import "${file}" --replicas 0 --daemon ${api}) && "${process.execPath}" "${BIN}" cache export "$id" -O "${join(dir, "out.bin")}" --daemon ${api}`,
    ],
  }),
};

async function runPath(name: string, url: string): Promise<PathResult> {
  const command = COMMANDS[name];
  if (!command)
    return { path: name, ok: false, seconds: 0, peakRssMiB: 0, sampledMaxMiB: 0, cpuS: 0, clientPeakMiB: 0, note: "not run (no command yet: see COMMANDS)" };
  const dir = join(base, name);
  mkdirSync(dir);
  const procs: Proc[] = [];
  try {
    const sched = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0", "--cold-start", "peer"], "scheduler ready");
    procs.push(sched);
    const saddr = String((await sched.ready)["listen"]);
    const rule = "^" + new URL(url).origin.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "/";
    const daemon = spawnDamselfly(
      ["daemon", "--hostname", `large-${name}`, ...loopbackDaemonArgs(saddr, join(dir, "data")), "--proxy-rules", rule],
      "daemon ready",
      // The origin is on loopback, which the proxy denies unless allowed.
      { DAMSELFLY_DAEMON_PROXY_ALLOW_LOCAL: new URL(url).host },
    );
    procs.push(daemon);
    const ready = await daemon.ready;
    const pid = daemon.child.pid!;
    const { cmd, args } = command({ api: `http://${String(ready["api"])}`, proxy: String(ready["proxy"]), url, dir });
    const t0 = performance.now();
    // Bounded: 20 minutes (10 GiB at 9 MB/s).
    const r = await runSampled(cmd, args, pid, 1_200_000);
    const seconds = (performance.now() - t0) / 1000;
    const peak = peakRss(pid);
    const res: PathResult = {
      path: name,
      ok: r.code === 0 && peak < limitMiB * MiB,
      seconds,
      peakRssMiB: peak / MiB,
      sampledMaxMiB: r.daemonMax / MiB,
      cpuS: cpuSeconds(pid),
      clientPeakMiB: r.clientMax / MiB,
      note: r.code === 0 ? "" : `client exit ${r.code}: ${r.stderr.trim().slice(-400)}`,
    };
    return res;
  } finally {
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: PathResult[] = [];
const fd = openSync(file, "w");
ftruncateSync(fd, size);
closeSync(fd);
const origin = startOrigin(file);
try {
  const url = await origin.url;
  for (const name of paths) {
    const r = await runPath(name, url);
    results.push(r);
    console.log(
      `${r.path.padEnd(6)} ${r.ok ? "PASS" : "FAIL"}  ${(size / 2 ** 30).toFixed(1)} GiB in ${r.seconds.toFixed(1)} s (${(size / MiB / r.seconds).toFixed(0)} MiB/s)` +
        `  daemon peak RSS ${r.peakRssMiB.toFixed(0)} MiB (VmHWM; sampled max ${r.sampledMaxMiB.toFixed(0)} MiB; limit ${limitMiB})` +
        `  daemon CPU ${r.cpuS.toFixed(1)} s  client peak ${r.clientPeakMiB.toFixed(0)} MiB${r.note ? `  ${r.note}` : ""}`,
    );
  }
  console.log(`origin sent ${((await origin.sent()) / size).toFixed(3)} x the file over ${paths.length} path(s)`);
} finally {
  origin.stop();
  rmSync(base, { recursive: true, force: true });
}
process.exit(results.every((r) => r.ok) ? 0 : 1);
