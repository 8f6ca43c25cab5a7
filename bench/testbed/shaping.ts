// Checks that the tc shaping does what it says, with real transfers across the
// testbed before any mode runs:
//   download: origin -> p0 alone                limit min(B, d)
//   upload:   p0 -> origin (server on p0)       limit min(u, origin download)
//   origin:   origin -> p0..pk-1 at once        limit min(B, k*d), k*d > B when k >= 2 peers allow
// Goodput is file bytes over curl's transfer time; tbf counts whole Ethernet
// frames, so TCP goodput tops out near 1448/1514 = 95.6 % of the rate.
import { join } from "node:path";
import { makeFile } from "../make-file.js";
import { startOriginServer } from "./origin.js";
import { runClient } from "./proc.js";
import type { Host, Testbed } from "./topology.js";

export interface ShapingCheck {
  name: string;
  path: string;
  limitBps: number;
  goodputBps: number;
  // goodput / limit
  ratio: number;
}

export const GOODPUT_CEILING = 1448 / 1514;

async function curlRate(from: Host, url: string, out: string, deadline: number): Promise<{ bytes: number; seconds: number }> {
  const r = await runClient(
    from.ns,
    ["curl", "-sS", "-f", "--noproxy", "*", "-o", out, "-w", "%{size_download} %{time_total} %{time_starttransfer}", url],
    deadline,
  );
  if (r.code !== 0)
    throw new Error(`shaping check: curl ${url} in ${from.ns} failed (${r.code ?? r.signal}${r.timedOut ? ", timed out" : ""}): ${r.stderr.trim()}`);
  const [bytes, total] = r.stdout.trim().split(" ").map(Number);
  return { bytes: bytes!, seconds: total! };
}

export async function checkShaping(tb: Testbed, dir: string, logDir: string): Promise<ShapingCheck[]> {
  const B = tb.originRateBps;
  const d = tb.peerRateBps;
  // About 3 s at the slowest single-link rate.
  const size = Math.min(32, Math.max(1, Math.round(((Math.min(B, d) / 8) * 3) / 2 ** 20))) * 2 ** 20;
  const file = join(dir, "shaping.bin");
  await makeFile(file, size, "shaping");
  const results: ShapingCheck[] = [];
  const add = (name: string, path: string, limitBps: number, bytes: number, seconds: number) => {
    const goodputBps = (bytes * 8) / seconds;
    results.push({ name, path, limitBps, goodputBps, ratio: goodputBps / limitBps });
  };
  const p0 = tb.peers[0]!;

  const origin = await startOriginServer(tb.origin, file, join(logDir, "shaping-origin.log"));
  try {
    const r = await curlRate(p0, origin.url, "/dev/null", performance.now() + 120_000);
    add("peer download", `origin -> ${p0.id}`, Math.min(B, d), r.bytes, r.seconds);

    const k = Math.min(tb.peers.length, Math.max(2, Math.ceil(B / d) + 1));
    if (k * d > B && k >= 2) {
      const t0 = performance.now();
      const rs = await Promise.all(tb.peers.slice(0, k).map((p) => curlRate(p, origin.url, "/dev/null", performance.now() + 120_000)));
      const seconds = (performance.now() - t0) / 1000;
      add(
        "origin upload",
        `origin -> ${tb.peers
          .slice(0, k)
          .map((p) => p.id)
          .join(",")} at once`,
        Math.min(B, k * d),
        rs.reduce((a, x) => a + x.bytes, 0),
        seconds,
      );
    }
  } finally {
    await origin.stop();
  }

  const onPeer = await startOriginServer(p0, file, join(logDir, "shaping-p0.log"));
  try {
    const r = await curlRate(tb.origin, onPeer.url, "/dev/null", performance.now() + 120_000);
    add("peer upload", `${p0.id} -> origin`, Math.min(d, B), r.bytes, r.seconds);
  } finally {
    await onPeer.stop();
  }
  return results;
}
