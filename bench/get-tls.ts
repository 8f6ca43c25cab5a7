// What mutual TLS and trusted piece digests cost one `get` on loopback:
// two clusters side by side (scheduler, seed peer, peer), one without
// certificates and one with --tls-* on every component, measured in
// alternating rounds so the machine's noise hits both alike.
//   node dist/bench/get-tls.js [--size 512MiB] [--rounds 3] [--dir /dev/shm]
// Cold: a new task (--tag), origin -> seed -> peer -> output. Warm: the same
// task again from the peer's store. CPU per GiB is user+system seconds of the
// seed, the peer and the `get` process, from /proc and /usr/bin/time.
import { mkdtempSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { parseBytes } from "../src/common/config.js";
import { createCa, issueCert } from "../src/common/tls/issue.js";
import type { Role } from "../src/common/tls/roles.js";
import { loopbackDaemonArgs } from "../test/helpers/procs.js";
import { BIN, cpuSeconds, median, mibps, spawnDamselfly, startOrigin, type Proc } from "./lib.js";
import { makeFile } from "./make-file.js";

const size = parseBytes(opt("--size", "512MiB"));
const rounds = Number(opt("--rounds", "3"));
const dir = mkdtempSync(join(opt("--dir", tmpdir()), "df-bench-tls-"));
const GiB = 1024 ** 3;

function opt(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

interface Side {
  name: string;
  seed: Proc;
  peer: Proc;
  seedPid: number;
  peerPid: number;
  daemon: string;
}

// `get` under /usr/bin/time: wall ms and the process's own CPU seconds.
function timedGet(args: string[]): Promise<{ code: number; ms: number; cpu: number; stderr: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const c = spawn("/usr/bin/time", ["-f", "TIME %U %S", process.execPath, BIN, "get", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr!.on("data", (d) => (stderr += d));
    c.on("exit", (code) => {
      const m = /TIME ([\d.]+) ([\d.]+)/.exec(stderr);
      resolve({ code: code ?? -1, ms: performance.now() - t0, cpu: m ? Number(m[1]) + Number(m[2]) : NaN, stderr });
    });
  });
}

async function certArgs(pki: string, role: Role, name: string): Promise<string[]> {
  const out = join(pki, name);
  await issueCert({ caDir: join(pki, "ca"), role, name, ips: ["127.0.0.1"], dns: ["localhost"], out });
  return ["--tls-ca", join(out, "ca.crt"), "--tls-cert", join(out, "tls.crt"), "--tls-key", join(out, "tls.key")];
}

async function startSide(name: string, tls: boolean, procs: Proc[]): Promise<Side> {
  const base = join(dir, name);
  await mkdir(base, { recursive: true });
  const pki = join(base, "pki");
  if (tls) await createCa(join(pki, "ca"));
  const sched = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0", ...(tls ? await certArgs(pki, "scheduler", "scheduler") : [])], "scheduler ready");
  procs.push(sched);
  const saddr = String((await sched.ready)["listen"]);
  const daemon = async (n: string, seed: boolean) => {
    const socket = join(base, n, "daemon.sock");
    const p = spawnDamselfly(
      [
        "daemon",
        ...(seed ? ["--seed"] : []),
        ...loopbackDaemonArgs(saddr, join(base, n)),
        "--hostname",
        n,
        ...(tls ? [...(await certArgs(pki, seed ? "seed-peer" : "peer", n)), "--listen", `unix:${socket}`] : []),
      ],
      "daemon ready",
    );
    procs.push(p);
    const ready = await p.ready;
    return { p, api: tls ? `unix:${socket}` : `http://${String(ready["api"])}` };
  };
  const seed = await daemon("seed", true);
  const peer = await daemon("peer", false);
  return { name, seed: seed.p, peer: peer.p, seedPid: seed.p.child.pid!, peerPid: peer.p.child.pid!, daemon: peer.api };
}

interface Sample {
  ms: number;
  getCpu: number;
  seedCpu: number;
  peerCpu: number;
}

async function measure(side: Side, url: string, tag: string, out: string): Promise<Sample> {
  const s0 = cpuSeconds(side.seedPid);
  const p0 = cpuSeconds(side.peerPid);
  const g = await timedGet([url, "-O", out, "--tag", tag, "--daemon", side.daemon, "--no-progress"]);
  if (g.code !== 0) throw new Error(`${side.name} get failed: ${g.stderr.slice(-600)}`);
  rmSync(out, { force: true });
  return { ms: g.ms, getCpu: g.cpu, seedCpu: cpuSeconds(side.seedPid) - s0, peerCpu: cpuSeconds(side.peerPid) - p0 };
}

const procs: Proc[] = [];
try {
  const file = join(dir, "blob.bin");
  await makeFile(file, size);
  const origin = startOrigin(file);
  procs.push({ child: undefined as never, ready: Promise.resolve({}), stop: async () => origin.stop() });
  const url = await origin.url;
  const sides = [await startSide("plain", false, procs), await startSide("tls", true, procs)];
  const results: Record<string, { cold: Sample[]; warm: Sample[] }> = { plain: { cold: [], warm: [] }, tls: { cold: [], warm: [] } };
  for (let r = 0; r < rounds; r++) {
    // Alternate which side goes first.
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const tag = `bench-${side.name}-${Date.now()}-${r}`;
      const out = join(dir, `out-${side.name}`);
      results[side.name]!.cold.push(await measure(side, url, tag, out));
      results[side.name]!.warm.push(await measure(side, url, tag, out));
    }
  }
  const gib = size / GiB;
  console.log(`file ${(size / 1024 / 1024).toFixed(0)} MiB in ${dir}, ${rounds} alternating rounds, medians`);
  console.log("side   kind  wall ms   throughput   CPU-s/GiB: get   seed   peer   total");
  for (const side of ["plain", "tls"]) {
    for (const kind of ["cold", "warm"] as const) {
      const xs = results[side]![kind];
      const ms = median(xs.map((x) => x.ms));
      const g = median(xs.map((x) => x.getCpu)) / gib;
      const s = median(xs.map((x) => x.seedCpu)) / gib;
      const p = median(xs.map((x) => x.peerCpu)) / gib;
      console.log(
        `${side.padEnd(6)} ${kind}  ${ms.toFixed(0).padStart(7)}  ${mibps(size, ms).padStart(11)}   ${g.toFixed(2).padStart(10)} ${s.toFixed(2).padStart(6)} ${p.toFixed(2).padStart(6)}  ${(g + s + p).toFixed(2).padStart(6)}`,
      );
    }
  }
  const ratio = (kind: "cold" | "warm") => median(results.tls![kind].map((x) => x.ms)) / median(results.plain![kind].map((x) => x.ms));
  console.log(`tls/plain wall time: cold ${ratio("cold").toFixed(2)}x, warm ${ratio("warm").toFixed(2)}x`);
} finally {
  for (const p of procs.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
}
