// Model modes: a "model" of several files (model.ts) from a Hugging Face Hub
// or an S3 fixture (bench/model-origin.js: test/helpers/hub.ts, s3-server.ts
// serving the files from disk) on the origin host, behind its shaped link.
//   damselfly-hf / damselfly-s3: the damselfly mode (scheduler and seed on
//     the origin host, a daemon per peer) with `damselfly get -r hf://... |
//     s3://...` on every peer at once;
//   native-hf / native-s3: every peer downloads the files straight from the
//     origin with curl (all files at once: --parallel), following the hub's
//     redirect to its CDN, or signing for S3 (--aws-sigv4).
// Outputs are directories: each is checked file by file against the model
// (analyze); each daemon's peak RSS (VmHWM) and the origin process's are
// reported.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, ROOT } from "../lib.js";
import { S3_ACCESS_KEY, S3_SECRET } from "../../test/helpers/s3-server.js";
import { damselflyMode, type DamselflyOptions } from "./mode-damselfly.js";
import { peerResult, type Mode, type ModeContext, type ModeRun, type PeerResult } from "./mode.js";
import { MODEL_BUCKET, MODEL_PREFIX, MODEL_REPO, verifyModelDir, type Model } from "./model.js";
import { startOriginProcess, type OriginServer } from "./origin.js";
import { runClient } from "./proc.js";

export type ModelKind = "hf" | "s3";
// Filled by run.ts once the model's files exist (before any mode runs).
export interface ModelHolder {
  model?: Model;
}

const S3_ENV = [`AWS_ACCESS_KEY_ID=${S3_ACCESS_KEY}`, `AWS_SECRET_ACCESS_KEY=${S3_SECRET}`, "AWS_SHARED_CREDENTIALS_FILE=/nonexistent"];

function startModelOrigin(kind: ModelKind, ctx: ModeContext, model: Model): Promise<OriginServer> {
  const o = ctx.tb.origin;
  const argv = [process.execPath, join(ROOT, "dist", "bench", "model-origin.js"), kind, o.ip, ctx.workDir, ...model.files.map((f) => f.path)];
  // Ready after hashing (hf) or uploading (s3) every file: minutes for GiBs.
  return startOriginProcess(o, `model-origin-${kind}`, argv, join(ctx.logDir, `model-origin-${kind}.log`), 1_200_000);
}

export function peakRssMiB(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

// Checks every peer's output directory (then drops `output`, which the
// harness would hash as one file) and reports peak RSS.
async function checkOutputs(model: Model, peers: PeerResult[], notes: string[]): Promise<void> {
  for (const p of peers) {
    if (p.ok && p.output) {
      const bad = await verifyModelDir(model, p.output);
      if (bad) {
        p.ok = false;
        p.error = bad;
      }
    }
    delete p.output;
  }
  notes.push(`outputs checked file by file: ${peers.filter((p) => p.ok).length}/${peers.length} complete and byte-identical`);
}

function damselflyModel(kind: ModelKind, holder: ModelHolder, opts: DamselflyOptions): Mode {
  const get = (dir: string, url: string, daemon: string[]) => {
    const output = join(dir, "model");
    const src =
      kind === "hf" ? [`hf://${MODEL_REPO}`, "--hf-endpoint", url] : [`s3://${MODEL_BUCKET}/${MODEL_PREFIX}`, "--s3-endpoint", url, "--s3-path-style"];
    const env = kind === "hf" ? [`HF_ENDPOINT=${url}`] : S3_ENV;
    const argv = [
      "env",
      ...env,
      process.execPath,
      BIN,
      "get",
      "-r",
      src[0]!,
      "-O",
      output,
      ...src.slice(1),
      "--no-progress",
      ...daemon,
      ...(opts.getArgs ?? []),
    ];
    return { argv, output };
  };
  const inner = damselflyMode(`damselfly-${kind}`, undefined, {
    ...opts,
    startOrigin: (ctx) => startModelOrigin(kind, ctx, holder.model!),
    clientCommand: get,
  });
  return {
    name: inner.name,
    create(ctx: ModeContext): ModeRun {
      const run = inner.create(ctx);
      return {
        ...run,
        async analyze(peers) {
          // Before the daemons stop: their VmHWM is the peak of the whole run.
          const rss = run.agents().map((a) => ({ name: a.name, peakRssMiB: peakRssMiB(a.pid) }));
          const r = await run.analyze(peers);
          await checkOutputs(holder.model!, peers, r.notes);
          r.notes.push(`peak RSS (VmHWM): ${rss.map((x) => `${x.name} ${x.peakRssMiB ?? "?"} MiB`).join(", ")}`);
          return { extra: { ...r.extra, peakRss: rss, model: holder.model }, notes: r.notes };
        },
      };
    },
  };
}

function nativeModel(kind: ModelKind, holder: ModelHolder): Mode {
  return {
    name: `native-${kind}`,
    create(ctx: ModeContext): ModeRun {
      let origin: OriginServer | undefined;
      const model = holder.model!;
      return {
        clientsAreAgents: true,
        async setup() {
          origin = await startModelOrigin(kind, ctx, model);
        },
        agents: () => (origin ? [{ name: `model-origin-${kind} (node)`, pid: origin.service.pid, role: "agent" as const }] : []),
        async run(t0, deadlineMs) {
          const url = origin!.url;
          return Promise.all(
            ctx.peers.map(async (p): Promise<PeerResult> => {
              const output = join(ctx.workDir, p.id, "model");
              const auth =
                kind === "hf"
                  ? ["-L"]
                  : [
                      // S3 wants the payload hash header with header auth; curl 7.88 sends it only when given.
                      "-H",
                      "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                      "--aws-sigv4",
                      "aws:amz:us-east-1:s3",
                      "--user",
                      `${S3_ACCESS_KEY}:${S3_SECRET}`,
                    ];
              const each = model.files.flatMap((f) => [
                "-o",
                join(output, f.name),
                kind === "hf" ? `${url}/${MODEL_REPO}/resolve/main/${f.name}` : `${url}/${MODEL_BUCKET}/${MODEL_PREFIX}${f.name}`,
              ]);
              const argv = ["curl", "-sS", "-f", "--noproxy", "*", "--create-dirs", "--parallel", "--parallel-max", "8", ...auth, ...each];
              const r = await runClient(p.ns, argv, deadlineMs);
              return peerResult(p.id, r, t0, output, () => r.stderr.trim().slice(-500));
            }),
          );
        },
        originSent: () => origin!.sent(),
        async analyze(peers) {
          const notes: string[] = [];
          const rss = origin ? peakRssMiB(origin.service.pid) : null;
          await checkOutputs(model, peers, notes);
          notes.push(`model-origin-${kind} peak RSS (VmHWM): ${rss ?? "?"} MiB`);
          return { extra: { originPeakRssMiB: rss, model }, notes };
        },
        async teardown() {
          await origin?.stop();
        },
      };
    },
  };
}

export function modelModes(holder: ModelHolder, opts: DamselflyOptions): Record<string, Mode> {
  return {
    "damselfly-hf": damselflyModel("hf", holder, opts),
    "damselfly-s3": damselflyModel("s3", holder, opts),
    "native-hf": nativeModel("hf", holder),
    "native-s3": nativeModel("s3", holder),
  };
}
