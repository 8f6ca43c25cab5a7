// What rate limiting costs in CPU.
//   node dist/bench/rate-limit-cost.js [--size 512MiB] [--rounds 3] [--dir /dev/shm] [--binding 120MiB]
// 1. take() on its own: calls per second for an unlimited bucket, a limited
//    one with tokens to spare, and a task + host chain (what each piece read
//    costs on a limited daemon).
// 2. A cold `get` (origin -> seed -> peer) through three peer daemons: one
//    without limits, one whose limits never bind (buckets counted, never
//    empty), one held to --binding (reads paused and resumed all along).
//    Figures are the peer daemon's CPU seconds per GiB received.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBytes } from "../src/common/config.js";
import { Throttle, TokenBucket } from "../src/common/token-bucket.js";
import { BIN, cpuSeconds, loopbackCluster, median, mibps, opt, run } from "./lib.js";

const GiB = 1024 ** 3;

function microbench(): void {
  const N = 5_000_000;
  const cases: Array<[string, () => boolean]> = [];
  const unlimited = new TokenBucket(0);
  cases.push(["unlimited bucket", () => unlimited.take(65536)]);
  // 1 PiB/s: never runs dry, so every call refills and spends.
  const roomy = new TokenBucket(2 ** 50);
  cases.push(["limited bucket (tokens to spare)", () => roomy.take(65536)]);
  const chain = new Throttle([new TokenBucket(2 ** 50), new TokenBucket(2 ** 50)]);
  cases.push(["task + host chain", () => chain.take(65536)]);
  console.log("take() per call:");
  for (const [name, f] of cases) {
    for (let i = 0; i < 100_000; i++) f(); // warm-up
    // CPU time, not wall time: other processes share the cores.
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) f();
    const used = process.cpuUsage(t0);
    const ns = ((used.user + used.system) * 1000) / N;
    console.log(`  ${name.padEnd(34)} ${ns.toFixed(1).padStart(6)} ns  (${(1e3 / ns).toFixed(1)} M calls/s)`);
  }
}

async function endToEnd(): Promise<void> {
  const size = parseBytes(opt("--size", "512MiB"));
  const rounds = Number(opt("--rounds", "3"));
  const binding = opt("--binding", "120MiB");
  const dir = mkdtempSync(join(opt("--dir", tmpdir()), "df-bench-rl-"));
  const procs: Array<{ stop(): Promise<void> | void }> = [];
  try {
    const { url, daemon } = await loopbackCluster(dir, size, procs);
    const seed = daemon("seed", ["--seed"]);
    await seed.ready;
    const variants: Array<[string, string[]]> = [
      ["no limits", []],
      ["limits that never bind", ["--total-download-rate-limit", "1000GiB", "--per-task-rate-limit", "1000GiB"]],
      [`held to ${binding}/s`, ["--total-download-rate-limit", binding]],
    ];
    const peers = variants.map(([name, extra], i) => ({ name, proc: daemon(`peer-${i}`, extra) }));
    const apis = await Promise.all(peers.map(async (p) => `http://${String((await p.proc.ready)["api"])}`));
    const perGiB: number[][] = peers.map(() => []);
    const ms: number[][] = peers.map(() => []);
    // Rounds interleave the variants, each round starting at the next one:
    // the machine's load drifts (other processes share its cores), and where
    // a get falls in a round matters too; every variant should see the same.
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < peers.length; k++) {
        const i = (r + k) % peers.length;
        const p = peers[i]!;
        const out = join(dir, "out");
        const pid = p.proc.child.pid!;
        const cpu0 = cpuSeconds(pid);
        const g = await run(process.execPath, [BIN, "get", url, "-O", out, "--tag", `rl-${Date.now()}-${r}`, "--daemon", apis[i]!, "--no-progress"]);
        if (g.code !== 0) throw new Error(`get failed: ${g.stderr}`);
        perGiB[i]!.push((cpuSeconds(pid) - cpu0) / (size / GiB));
        ms[i]!.push(g.ms);
        rmSync(out, { force: true });
      }
    }
    const rows = peers.map(
      (p, i) =>
        `  ${p.name.padEnd(24)} ${median(perGiB[i]!).toFixed(2).padStart(5)} CPU-s/GiB  ${median(ms[i]!).toFixed(0).padStart(6)} ms  ${mibps(size, median(ms[i]!))}`,
    );
    console.log(`cold get of ${(size / 1024 / 1024).toFixed(0)} MiB via a seed, ${rounds} rounds (medians; the peer daemon's CPU):`);
    for (const r of rows) console.log(r);
  } finally {
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

microbench();
if (!process.argv.includes("--micro")) await endToEnd();
