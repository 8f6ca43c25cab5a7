// Throughput of one `get` on loopback through a seed peer and a peer daemon,
// against curl fetching the same file from the same origin.
//   node dist/bench/get-throughput.js [--size 1GiB] [--rounds 3] [--daemon-args '--pieces-per-parent 8']
// Cold: a task the swarm has never seen (a new --tag each round), so the
// bytes go origin -> seed -> peer -> output. Warm: the same task again, served
// from the local peer's store.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBytes } from "../src/common/config.js";
import { BIN, loopbackCluster, opt, median, mibps, run } from "./lib.js";

const size = parseBytes(opt("--size", "1GiB"));
const rounds = Number(opt("--rounds", "3"));
// Where the origin file, the stores and the outputs live. On this class of
// VM the disk sustains ~380 MB/s, so on disk the figure measures the disk
// (the seed and the peer both store the file, curl only writes it once);
// --dir /dev/shm measures the software.
const dir = mkdtempSync(join(opt("--dir", tmpdir()), "df-bench-"));
const procs: Array<{ stop(): Promise<void> | void }> = [];
try {
  // Extra daemon flags, for experiments.
  const extra = opt("--daemon-args", "").split(/\s+/).filter(Boolean);
  const { url, daemon } = await loopbackCluster(dir, size, procs);
  const seed = daemon("seed", ["--seed", ...extra]);
  const peer = daemon("peer", extra);
  const seedApi = `http://${String((await seed.ready)["api"])}`;
  const api = `http://${String((await peer.ready)["api"])}`;

  const curl: number[] = [];
  const cold: number[] = [];
  const curlPair: number[] = [];
  const oneHop: number[] = [];
  const warm: number[] = [];
  // Each timed command starts with no dirty pages waiting for the disk, so
  // writeback left over from the previous one does not throttle it.
  const settle = () => run("sync", []);
  for (let r = 0; r < rounds; r++) {
    const out = join(dir, "out");
    await settle();
    // curl's files are kept until the end, as the daemons keep their tasks:
    // on this VM a file that stays in the page cache takes fresh guest memory
    // (first touch ~2-3 s/GiB), a deleted one lets the next write reuse its
    // pages, so deleting only curl's output would flatter curl.
    const c = await run("curl", ["-sS", "-o", `${out}.curl${r}`, url]);
    if (c.code !== 0) throw new Error(`curl failed: ${c.stderr}`);
    curl.push(c.ms);
    // With seed-first cold starts the seed and the peer each store every byte
    // and this VM serialises page-cache writes across processes: two curls
    // writing at once is that mode's yardstick. (The default peer-first cold
    // start stores each byte once on the requesting peer.)
    await settle();
    const t0 = performance.now();
    const pair = await Promise.all([run("curl", ["-sS", "-o", `${out}.a${r}`, url]), run("curl", ["-sS", "-o", `${out}.b${r}`, url])]);
    if (pair.some((p) => p.code !== 0)) throw new Error("curl pair failed");
    curlPair.push(performance.now() - t0);
    await settle();
    const g = await run(process.execPath, [BIN, "get", url, "-O", out, "--tag", `bench-${Date.now()}-${r}`, "--daemon", api, "--no-progress"]);
    if (g.code !== 0) throw new Error(`get failed: ${g.stderr}`);
    cold.push(g.ms);
    rmSync(out, { force: true });
    // One hop: the seed itself fetches from the origin and writes the output
    // (each byte stored once, as curl writes it once).
    await settle();
    const s1 = await run(process.execPath, [BIN, "get", url, "-O", out, "--tag", `bench-seed-${Date.now()}-${r}`, "--daemon", seedApi, "--no-progress"]);
    if (s1.code !== 0) throw new Error(`seed get failed: ${s1.stderr}`);
    oneHop.push(s1.ms);
    rmSync(out, { force: true });
    const tag = `bench-warm-${Date.now()}-${r}`;
    // Warm: fetch once to populate, then time the local hit.
    await run(process.execPath, [BIN, "get", url, "-O", out, "--tag", tag, "--daemon", api, "--no-progress"]);
    rmSync(out, { force: true });
    await settle();
    const w = await run(process.execPath, [BIN, "get", url, "-O", out, "--tag", tag, "--daemon", api, "--no-progress"]);
    if (w.code !== 0) throw new Error(`warm get failed: ${w.stderr}`);
    warm.push(w.ms);
    rmSync(out, { force: true });
  }
  const c = median(curl);
  const g = median(cold);
  const w = median(warm);
  const h = median(oneHop);
  const cp = median(curlPair);
  console.log(`file ${(size / 1024 / 1024).toFixed(0)} MiB in ${dir}, ${rounds} rounds (medians, whole-process wall time)`);
  console.log(`  curl from origin           ${c.toFixed(0).padStart(6)} ms  ${mibps(size, c)}`);
  console.log(`  get cold (origin>peer)      ${g.toFixed(0).padStart(5)} ms  ${mibps(size, g)}  = ${(c / g).toFixed(2)}x curl throughput (target >= 0.8x)`);
  console.log(
    `  2 curls at once (2 writes)  ${cp.toFixed(0).padStart(5)} ms  = ${(cp / g).toFixed(2)}x of that by get cold (the floor for seed-first cold starts)`,
  );
  console.log(`  get one hop (origin>seed)   ${h.toFixed(0).padStart(5)} ms  ${mibps(size, h)}  = ${(c / h).toFixed(2)}x curl throughput`);
  console.log(`  get warm (local peer)      ${w.toFixed(0).padStart(6)} ms  ${mibps(size, w)}  (target >= 1 GB/s = ${mibps(1e9, 1000)})`);
} finally {
  for (const p of procs.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
}
