// An in-process scheduler (with mutual TLS when given a PKI) and clients with
// role certificates.
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import type { Role } from "../../src/common/tls/roles.js";
import { createRpcTransport, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { Scheduler, type SchedulerOptions } from "../../src/scheduler/scheduler.js";
import { after } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makePki, type CertFiles, type Pki } from "./pki.js";

export type SchedClient = Client<typeof schedulerv1.SchedulerService>;
// The announce-stream driver and its helpers, for tests that import only this file.
export { LEN, newTaskId, PL, TestPeer, until, withTimeout } from "./announce-peer.js";
export { codeOf } from "./rpc-code.js";

export interface Started {
  sched: Scheduler;
  port: number;
  // A client with a certificate of `role`/`name` (issued by the pki).
  client(role: Role, name: string, opts?: { ips?: string[]; dns?: string[] }): Promise<SchedClient>;
}

// A test file's scope: what to close at its end (in reverse), and a PKI in a
// temporary directory removed then.
export function fileScope(prefix: string): { cleanups: (() => unknown)[]; dir: string; pki: Promise<Pki> } {
  const cleanups: (() => unknown)[] = [];
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    rmSync(dir, { recursive: true, force: true });
  });
  return { cleanups, dir, pki: makePki(join(dir, "pki")) };
}

// cleanups: where the test file collects what to close at its end.
export async function startTlsScheduler(
  pki: Pki | undefined,
  cleanups: (() => unknown)[],
  flags: Record<string, unknown> = {},
  opts: Omit<SchedulerOptions, "config" | "logger"> = {},
): Promise<Started> {
  const tls = pki ? await pki.issue("scheduler", "sched") : undefined;
  const tlsFlags = tls ? { "tls.ca": tls.ca, "tls.cert": tls.cert, "tls.key": tls.key } : {};
  const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0", seedWait: 5000, ...tlsFlags, ...flags } });
  // Its hosts are made up (no daemon listens on their upload ports): the
  // scheduler's own check of a reported parent would remove them.
  const sched = new Scheduler({ config, logger: createLogger("silent"), probe: async () => true, ...opts });
  await sched.start();
  cleanups.push(() => sched.close());
  const port = sched.address.port;
  return {
    sched,
    port,
    client: async (role, name, o) => {
      if (!pki) return createClient(schedulerv1.SchedulerService, createRpcTransport(`http://127.0.0.1:${port}`));
      return clientWith(await pki.issue(role, name, o), port, cleanups);
    },
  };
}

export function identityOf(files: CertFiles): TlsIdentity {
  return TlsIdentity.load(files, { watch: false });
}

export function clientWith(files: CertFiles, port: number, cleanups: (() => unknown)[]): SchedClient {
  const identity = identityOf(files);
  cleanups.push(() => identity.close());
  return createClient(
    schedulerv1.SchedulerService,
    createRpcTransport(`http://127.0.0.1:${port}`, { identity, server: { roles: ["scheduler"], verifyHostname: true } }),
  );
}

export function hostMsg(id: string, hostname: string, o: { ip?: string; seed?: boolean; apiPort?: number } = {}): schedulerv1.Host {
  return create(schedulerv1.HostSchema, {
    id,
    hostname,
    ip: o.ip ?? "127.0.0.1",
    uploadPort: 4000,
    apiPort: o.apiPort ?? 0,
    type: o.seed ? HostType.SEED : HostType.NORMAL,
  });
}
