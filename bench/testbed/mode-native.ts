// native: every peer fetches the whole file from the origin's HTTP server
// with curl, all at once (client-server distribution: N*S/B at best).
import { join } from "node:path";
import { peerResult, type Mode, type ModeContext, type ModeRun, type PeerResult } from "./mode.js";
import { startOriginServer, type OriginServer } from "./origin.js";
import { runClient } from "./proc.js";

export const nativeMode: Mode = {
  name: "native",
  create(ctx: ModeContext): ModeRun {
    let origin: OriginServer | undefined;
    return {
      clientsAreAgents: true,
      async setup() {
        origin = await startOriginServer(ctx.tb.origin, ctx.file, join(ctx.logDir, "origin-server.log"));
      },
      agents: () => (origin ? [{ name: "origin-server (node)", pid: origin.service.pid, role: "agent" as const }] : []),
      async run(t0, deadlineMs) {
        const url = origin!.url;
        return Promise.all(
          ctx.peers.map(async (p): Promise<PeerResult> => {
            const output = join(ctx.workDir, `${p.id}.bin`);
            const r = await runClient(p.ns, ["curl", "-sS", "-f", "--noproxy", "*", "-o", output, url], deadlineMs);
            return peerResult(p.id, r, t0, output, () => r.stderr.trim().slice(-500));
          }),
        );
      },
      originSent: () => origin!.sent(),
      async analyze() {
        return { extra: {}, notes: [] };
      },
      async teardown() {
        await origin?.stop();
      },
    };
  },
};
