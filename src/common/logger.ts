import { createRequire } from "node:module";
import type { Logger, pino as Pino } from "pino";

export type { Logger };

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

// One root logger per process; components take a child with fixed fields
// (component, hostId, taskId, peerId) so lines can be joined across processes.
// Header values are redacted wherever they appear: they may carry credentials.
// pino loads on first use: `get`, the process a rollout starts on every node
// at once, never logs through it (docs/decisions/cli-startup.md).
export function createLogger(level: LogLevel = "info", destination: number | string = 2): Logger {
  const pino = createRequire(import.meta.url)("pino") as typeof Pino;
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: ["headers", "*.headers", "authorization", "*.authorization"], censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: destination, sync: false }),
  );
}

export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
