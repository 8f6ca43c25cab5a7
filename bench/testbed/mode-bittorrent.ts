// bittorrent: Debian's opentracker and an aria2c seeder on the origin host,
// one aria2c leecher per peer host. The clock starts before mktorrent hashes
// the file (publishing a file in BitTorrent costs that), then the tracker (its
// whitelist needs the info hash) and the seeder start, then every leecher at
// once; a leecher's completion is its exit (--seed-time=0).
//
// aria2c is kept inside the testbed: a private torrent, no DHT, no local peer
// discovery, no peer exchange, no IPv6, fixed listen port, and it exits if
// this benchmark dies (--stop-with-process).
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { peerResult, type Mode, type ModeContext, type ModeRun, type PeerResult } from "./mode.js";
import { runClient, sleep, startService, type Service } from "./proc.js";
import { runCommand } from "../../test/helpers/netns.js";
import type { Host } from "./topology.js";

export const TRACKER_PORT = 6969;
export const BT_PORT = 6881;

// sha1 of the bencoded info dictionary, as 40 hex digits.
export function infoHash(torrent: Buffer): string {
  let i = 0;
  const skip = (): void => {
    const c = torrent[i]!;
    if (c === 0x69 /* i */) {
      i = torrent.indexOf(0x65, i) + 1;
    } else if (c === 0x6c /* l */ || c === 0x64 /* d */) {
      i++;
      for (let k = 0; torrent[i] !== 0x65; k++) {
        if (k > 1_000_000 || i >= torrent.length) throw new Error("bad torrent");
        skip();
      }
      i++;
    } else if (c >= 0x30 && c <= 0x39) {
      const colon = torrent.indexOf(0x3a, i);
      const len = Number(torrent.subarray(i, colon).toString("ascii"));
      i = colon + 1 + len;
    } else {
      throw new Error(`bad torrent at byte ${i}`);
    }
  };
  if (torrent[0] !== 0x64) throw new Error("torrent is not a dictionary");
  i = 1;
  for (let k = 0; k < 10_000 && torrent[i] !== 0x65; k++) {
    const colon = torrent.indexOf(0x3a, i);
    const len = Number(torrent.subarray(i, colon).toString("ascii"));
    const key = torrent.subarray(colon + 1, colon + 1 + len).toString("latin1");
    i = colon + 1 + len;
    const start = i;
    skip();
    if (key === "info") return createHash("sha1").update(torrent.subarray(start, i)).digest("hex");
  }
  throw new Error("torrent has no info dictionary");
}

async function waitListening(h: Host, port: number, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (let i = 0; i < 1_000 && performance.now() < end; i++) {
    const r = await runCommand("ip", ["netns", "exec", h.ns, "ss", "-Hltn", `sport = :${port}`], { timeoutMs: 5_000 });
    if (r.stdout.includes(`${h.ip}:${port}`) || r.stdout.includes(`*:${port}`) || r.stdout.includes(`0.0.0.0:${port}`)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${h.ip}:${port} in ${h.ns} after ${timeoutMs} ms`);
}

function aria2Args(logFile: string, maxPeers: number): string[] {
  return [
    "aria2c",
    "--no-conf=true",
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--disable-ipv6=true",
    "--async-dns=false",
    `--listen-port=${BT_PORT}`,
    `--bt-max-peers=${maxPeers}`,
    "--file-allocation=none",
    "--check-integrity=false",
    "--allow-overwrite=true",
    "--auto-file-renaming=false",
    "--bt-save-metadata=false",
    "--max-overall-upload-limit=0",
    "--max-upload-limit=0",
    "--bt-tracker-connect-timeout=10",
    "--bt-tracker-timeout=10",
    "--summary-interval=0",
    "--console-log-level=warn",
    "--enable-color=false",
    `--stop-with-process=${process.pid}`,
    `--log=${logFile}`,
    "--log-level=notice",
  ];
}

export const bittorrentMode: Mode = {
  name: "bittorrent",
  create(ctx: ModeContext): ModeRun {
    const origin = ctx.tb.origin;
    const trackerDir = join(ctx.workDir, "tracker");
    const torrent = join(ctx.workDir, `${basename(ctx.file)}.torrent`);
    const maxPeers = ctx.peers.length + 5;
    let tracker: Service | undefined;
    let seeder: Service | undefined;
    const extra: Record<string, unknown> = {};
    return {
      clientsAreAgents: true,
      async setup() {
        mkdirSync(trackerDir, { recursive: true, mode: 0o755 });
      },
      agents: () => [
        ...(seeder ? [{ name: "aria2c seeder", pid: seeder.pid, role: "agent" as const }] : []),
        ...(tracker ? [{ name: "opentracker", pid: tracker.pid, role: "infra" as const }] : []),
      ],
      async run(t0, deadlineMs) {
        const fail = (e: unknown): PeerResult[] =>
          ctx.peers.map((p) => ({
            peer: p.id,
            ok: false,
            seconds: null,
            exit: null,
            cpuS: null,
            error: `not started: ${e instanceof Error ? e.message : String(e)}`,
          }));
        try {
          const announce = `http://${origin.ip}:${TRACKER_PORT}/announce`;
          const mk = await runClient(origin.ns, ["mktorrent", "-p", "-a", announce, "-o", torrent, ctx.file], deadlineMs);
          if (mk.code !== 0) throw new Error(`mktorrent failed (${mk.code ?? mk.signal}): ${mk.stderr.trim()}`);
          extra["mktorrentS"] = (mk.endMs - t0) / 1000;
          extra["mktorrentCpuS"] = mk.cpuS;
          const meta = readFileSync(torrent);
          const pl = /12:piece lengthi(\d+)e/.exec(meta.toString("latin1"));
          if (pl) extra["pieceLength"] = Number(pl[1]);
          const hash = infoHash(meta);
          extra["infoHash"] = hash;
          writeFileSync(join(trackerDir, "whitelist.txt"), hash + "\n", { mode: 0o644 });
          tracker = startService(
            origin.ns,
            "opentracker",
            ["opentracker", "-i", origin.ip, "-p", String(TRACKER_PORT), "-P", String(TRACKER_PORT), "-d", trackerDir, "-u", "nobody", "-w", "whitelist.txt"],
            join(ctx.logDir, "opentracker.log"),
          );
          await waitListening(origin, TRACKER_PORT, 10_000);
          seeder = startService(
            origin.ns,
            "aria2c seeder",
            [
              ...aria2Args(join(ctx.logDir, "aria2c-origin.log"), maxPeers),
              `--dir=${dirname(ctx.file)}`,
              "--seed-ratio=0.0",
              "--bt-seed-unverified=true",
              torrent,
            ],
            join(ctx.logDir, "aria2c-origin.out"),
          );
          await waitListening(origin, BT_PORT, 10_000);
          extra["seederUpS"] = (performance.now() - t0) / 1000;
        } catch (e) {
          return fail(e);
        }
        return Promise.all(
          ctx.peers.map(async (p): Promise<PeerResult> => {
            const dir = join(ctx.workDir, p.id);
            mkdirSync(dir, { recursive: true });
            const r = await runClient(
              p.ns,
              [...aria2Args(join(ctx.logDir, `aria2c-${p.id}.log`), maxPeers), `--dir=${dir}`, "--seed-time=0", torrent],
              deadlineMs,
            );
            return peerResult(p.id, r, t0, join(dir, basename(ctx.file)), () => (r.stderr + r.stdout).trim().slice(-500));
          }),
        );
      },
      async analyze() {
        const notes: string[] = [];
        if (typeof extra["mktorrentS"] === "number") {
          notes.push(
            `mktorrent ${(extra["mktorrentS"] as number).toFixed(2)} s (piece length ${extra["pieceLength"] ?? "?"} B); seeder listening at ${((extra["seederUpS"] as number) ?? 0).toFixed(2)} s`,
          );
        }
        return { extra, notes };
      },
      async teardown() {
        await seeder?.stop();
        await tracker?.stop();
      },
    };
  },
};
