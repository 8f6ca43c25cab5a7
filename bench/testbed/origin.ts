// The origin host's HTTP server: bench/origin-server.js (one file, Range
// support, counts the bytes it sent) run inside the origin namespace on
// 10.214.0.1.
import { join } from "node:path";
import { ROOT } from "../lib.js";
import { startService, type Service } from "./proc.js";
import type { Host } from "./topology.js";

export const ORIGIN_PORT = 8080;

export interface OriginServer {
  readonly service: Service;
  readonly url: string;
  // Bytes of file content sent so far (all clients, loopback ones included).
  sent(): Promise<number>;
  stop(): Promise<void>;
}

export function startOriginServer(h: Host, file: string, logFile: string, port = ORIGIN_PORT): Promise<OriginServer> {
  return startOriginProcess(h, "origin-server", [process.execPath, join(ROOT, "dist", "bench", "origin-server.js"), file, `${h.ip}:${port}`], logFile);
}

// Any origin process that prints "listening URL" when ready and "sent BYTES"
// on SIGUSR2 (origin-server.js, model-origin.js).
export async function startOriginProcess(h: Host, name: string, argv: string[], logFile: string, readyMs = 15_000): Promise<OriginServer> {
  const svc = startService(h.ns, name, argv, logFile);
  const line = await svc.waitForLine((l) => l.startsWith("listening "), readyMs, "listening line");
  const url = line.slice("listening ".length).trim();
  return {
    service: svc,
    url,
    async sent() {
      const before = svc.lines.length;
      process.kill(svc.pid, "SIGUSR2");
      const l = await svc.waitForLine((x) => x.startsWith("sent ") && svc.lines.indexOf(x, before) >= before, 5_000, "sent line");
      return Number(l.slice(5));
    },
    stop: () => svc.stop(),
  };
}
