import { loopbackDaemonArgs } from "../test/helpers/procs.js";
// Peak memory of each daemon while a seed distributes one large file to
// three peers at once (all real processes on loopback).
//   node dist/bench/swarm-memory.js [--size 2GiB] [--peers 3] [--dir /dev/shm]
// Reports each daemon's peak RSS (VmHWM) and CPU seconds, and the origin's
// egress as a multiple of the file.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBytes } from "../src/common/config.js";
import { BIN, opt, cpuSeconds, mibps, peakRss, run, spawnDamselfly, startOrigin } from "./lib.js";
import { makeFile } from "./make-file.js";

const size = parseBytes(opt("--size", "2GiB"));
const peerCount = Number(opt("--peers", "3"));
const dir = mkdtempSync(join(opt("--dir", tmpdir()), "df-bench-mem-"));
const procs: Array<{ stop(): Promise<void> | void }> = [];
try {
  const file = join(dir, "blob.bin");
  const digest = await makeFile(file, size);
  const origin = startOrigin(file);
  procs.push(origin);
  const url = await origin.url;
  const sched = spawnDamselfly(["scheduler", "--listen", "127.0.0.1:0"], "scheduler ready");
  procs.push(sched);
  const saddr = String((await sched.ready)["listen"]);
  const daemon = (name: string, seed: boolean) =>
    spawnDamselfly(["daemon", ...(seed ? ["--seed"] : []), "--hostname", name, ...loopbackDaemonArgs(saddr, join(dir, name))], "daemon ready");
  const seed = daemon("seed", true);
  const peers = Array.from({ length: peerCount }, (_, i) => daemon(`peer${i}`, false));
  procs.push(seed, ...peers);
  await seed.ready;
  const apis = await Promise.all(peers.map(async (p) => `http://${String((await p.ready)["api"])}`));

  const t0 = performance.now();
  const results = await Promise.all(
    apis.map((api, i) =>
      run(process.execPath, [BIN, "get", url, "-O", join(dir, `out${i}`), "--digest", `sha256:${digest}`, "--daemon", api, "--no-progress"]),
    ),
  );
  const ms = performance.now() - t0;
  for (const r of results) if (r.code !== 0) throw new Error(`get failed: ${r.stderr}`);
  const sent = await origin.sent();
  console.log(
    `${(size / 2 ** 30).toFixed(2)} GiB to ${peerCount} peers in ${(ms / 1000).toFixed(1)} s (${mibps(size * peerCount, ms)} delivered), all digests verified; data in ${dir}`,
  );
  console.log(`  origin egress: ${(sent / size).toFixed(3)} x the file`);
  for (const [name, p] of [["seed", seed], ...peers.map((p, i) => [`peer${i}`, p] as const)] as const) {
    const pid = p.child.pid!;
    console.log(`  ${name.padEnd(6)} peak RSS ${(peakRss(pid) / 2 ** 20).toFixed(0).padStart(4)} MiB (target < 150 MB)   cpu ${cpuSeconds(pid).toFixed(1)} s`);
  }
} finally {
  for (const p of procs.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
}
