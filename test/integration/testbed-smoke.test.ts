// The swarm testbed's small configuration (issue 4): 4 peer hosts in network
// namespaces on shaped links, a 32 MiB file, native HTTP vs Damselfly (and
// BitTorrent when aria2c, mktorrent and opentracker are installed, as .ci/run
// does). It checks the testbed itself works end to end and cleans up, and the
// swarm's basic promise: the origin's HTTP server sends the file about once
// with Damselfly and N times natively. Times are reported, not asserted
// (benchmarks measure speed). Needs root and `ip netns`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "../helpers/netns.js";
import { REPO_ROOT } from "../helpers/procs.js";

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const PEERS = 4;

function has(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function netnsWorks(): boolean {
  if (process.getuid?.() !== 0 || !has("ip") || !has("tc")) return false;
  const name = `dftb-probe-${process.pid}`;
  try {
    execFileSync("ip", ["netns", "add", name], { stdio: "ignore" });
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

interface Run {
  mode: string;
  completed: number;
  lastS: number | null;
  originHttpBytes: number | null;
  agentCpuSPerGiB: number;
  cpu: { mean: number };
  bound: { tStarS: number };
}

test(`testbed smoke: ${PEERS} peers, 32 MiB, native vs Damselfly${has("aria2c") ? " vs BitTorrent" : ""}`, { timeout: 420_000 }, async (t) => {
  if (!netnsWorks()) {
    t.skip("needs root, iproute2's ip/tc and network namespaces");
    return;
  }
  const bittorrent = has("aria2c") && has("mktorrent") && has("opentracker");
  if (!bittorrent) t.diagnostic("aria2c/mktorrent/opentracker missing: the bittorrent mode is skipped");
  const out = mkdtempSync(join(tmpdir(), "damselfly-testbed-smoke-"));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const modes = ["native", ...(bittorrent ? ["bittorrent"] : []), "damselfly", "damselfly-proxy"];
  const allowedCc = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
  const allowedBefore = readFileSync(allowedCc, "utf8");
  const r = await runCommand(
    process.execPath,
    [join(REPO_ROOT, "dist/bench/testbed/run.js"), "--peers", String(PEERS), "--size", "32MiB", "--modes", modes.join(","), "--out", out, "--idle-wait", "10"],
    { timeoutMs: 400_000 },
  );
  assert.equal(r.code, 0, `testbed failed (exit ${r.code}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);

  const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { runs: Run[]; shaping: unknown[]; config: { tcpCongestionControl?: string } };
  assert.ok(results.shaping.length > 0, "the shaped links were checked");
  // The hosts run cubic whatever the machine's default, and the machine's
  // list of allowed algorithms is as it was.
  if (readFileSync("/proc/sys/net/ipv4/tcp_available_congestion_control", "utf8").split(/\s+/).includes("cubic")) {
    assert.equal(results.config.tcpCongestionControl, "cubic");
  }
  assert.equal(readFileSync(allowedCc, "utf8"), allowedBefore, "the testbed restored the allowed congestion controls");
  const byMode = new Map(results.runs.map((x) => [x.mode, x]));
  for (const m of modes) {
    const run = byMode.get(m);
    assert.ok(run, `no result for mode ${m}`);
    assert.equal(run.completed, PEERS, `${m}: every peer got the file with the right sha256`);
    assert.ok(
      run.lastS !== null && run.lastS >= run.bound.tStarS * 0.9,
      `${m}: finished in ${run.lastS} s, faster than the bound ${run.bound.tStarS} s allows: the shaping is not working`,
    );
    t.diagnostic(
      `${m}: last ${run.lastS?.toFixed(1)} s = ${(run.lastS! / run.bound.tStarS).toFixed(2)}x T* (${run.bound.tStarS.toFixed(1)} s), CPU ${Math.round(run.cpu.mean * 100)}%, ${run.agentCpuSPerGiB.toFixed(1)} CPU-s/GiB up`,
    );
  }
  // Bytes, not times: natively the origin serves every peer; with Damselfly
  // it serves the seed once and the swarm does the rest.
  const native = byMode.get("native")!.originHttpBytes!;
  const df = byMode.get("damselfly")!.originHttpBytes!;
  assert.ok(native >= PEERS * SIZE, `native: the origin sent ${native} bytes, less than ${PEERS} copies`);
  assert.ok(df >= SIZE && df <= SIZE * 1.05, `damselfly: the origin sent ${df} bytes, more than 1.05x the file`);
  // curl through each daemon's proxy: the proxy rule sent it through P2P,
  // not on to the origin.
  const viaProxy = byMode.get("damselfly-proxy")!.originHttpBytes!;
  assert.ok(viaProxy >= SIZE && viaProxy <= SIZE * 1.05, `damselfly-proxy: the origin sent ${viaProxy} bytes, more than 1.05x the file`);

  assert.ok(existsSync(join(out, "plot.svg")), "the plot was written");
  assert.match(readFileSync(join(out, "plot.svg"), "utf8"), /<svg[\s\S]*damselfly/);
  // Nothing of the testbed is left behind.
  const netns = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  assert.ok(!/\bdftb-/.test(netns), `namespaces left behind:\n${netns}`);
  const links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
  assert.ok(!/\bdftb(0|v-)/.test(links), "the bridge or veths were left behind");
});
