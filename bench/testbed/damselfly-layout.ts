// The Damselfly cluster's layout on the testbed (ports, names, log files of
// the schedulers and seed daemons on the origin host) and what a hook run
// alongside the timed part sees of it (mode-damselfly.ts, mode-chaos.ts).
import { join } from "node:path";
import type { ModeContext } from "./mode.js";
import type { Service } from "./proc.js";
import { ORIGIN_IP } from "./topology.js";

export const SCHEDULER_PORT = 8002;
export const UPLOAD_PORT = 65002;

// The origin host's Damselfly services. The first scheduler and the first
// seed keep the names, ports and log files a lone one has always had; a
// further seed gets a suffix and ports SEED_PORT_STEP higher, a further
// scheduler a suffix and its own port.
const SEED_PORT_STEP = 10;

export interface SchedulerSpec {
  name: string;
  address: string;
  log: string;
}

export interface SeedSpec {
  // Service name (for logs and results) and the hostname it reports.
  name: string;
  hostname: string;
  api: string;
  upload: string;
  proxy: string;
  dataDir: string;
  log: string;
  agent: string;
}

export function schedulerSpecs(ports: readonly number[]): SchedulerSpec[] {
  return ports.map((port, i) => {
    const name = i === 0 ? "scheduler" : `scheduler-${i + 1}`;
    return { name, address: `${ORIGIN_IP}:${port}`, log: `${name}.log` };
  });
}

export function seedSpecs(n: number, ctx: ModeContext, apiLoopback: boolean): SeedSpec[] {
  return Array.from({ length: n }, (_, i) => {
    const sfx = i === 0 ? "" : `-${i + 1}`;
    const off = i * SEED_PORT_STEP;
    return {
      name: `seed${sfx}`,
      hostname: `origin-seed${sfx}`,
      api: `${apiLoopback ? "127.0.0.1" : ctx.tb.origin.ip}:${65000 + off}`,
      upload: `${ctx.tb.origin.ip}:${UPLOAD_PORT + off}`,
      proxy: `127.0.0.1:${65001 + off}`,
      dataDir: join(ctx.workDir, `seed${sfx}`),
      log: `daemon-seed${sfx}.log`,
      agent: `seed daemon${i === 0 ? "" : ` ${i + 1}`}`,
    };
  });
}

export interface Running<S> {
  readonly spec: S;
  readonly svc: Service;
}

// What a hook running alongside the timed part sees of the cluster.
export interface ClusterView {
  readonly ctx: ModeContext;
  readonly url: string;
  readonly schedulers: readonly Running<SchedulerSpec>[];
  readonly seeds: readonly Running<SeedSpec>[];
  readonly daemons: readonly Service[];
  // File bytes the HTTP origin sent since the clock started (warm-up not counted).
  originSent(): Promise<number>;
}

// Something done during the timed part (fault injection): started at t0,
// stopped once every client has exited, reported after the clock.
export interface RunHook {
  start(t0: number): void;
  stop(): Promise<void>;
  report(): { extra: Record<string, unknown>; notes: string[] };
}
