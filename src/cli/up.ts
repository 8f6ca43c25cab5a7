// `damselfly up`: a whole local swarm in one process (manager, scheduler, seed
// peer and one peer daemon) for trying Damselfly out. Mutual TLS between
// them, with a CA and certificates it makes in its data dir (up-certs.ts):
// the newcomer's default is the secure one.
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { formatHostPort, httpUrl, type HostPort } from "../common/address.js";
import { loadConfig } from "../common/config.js";
import { createLogger, type Logger, type LogLevel } from "../common/logger.js";
import { daemonSchema, managerSchema, schedulerSchema, type UpConfig } from "../common/schemas.js";
import type { TlsFiles } from "../common/tls/identity.js";
import { defaultDaemonSocket, defaultDaemonTarget } from "../common/daemon-socket.js";
import { DEMO_PATH, DEMO_SIZE, demoDigest, startDemoOrigin } from "./demo-origin.js";
import { ensureUpCertificates, type UpCertificates } from "./up-certs.js";

export const UP_ENDPOINTS = {
  seed: { listen: "127.0.0.1:65100", uploadListen: "127.0.0.1:65102", proxyListen: "127.0.0.1:65101" },
  // The peer's API is the default Unix socket (see daemonConfig).
  peer: { listen: "", uploadListen: "127.0.0.1:65002", proxyListen: "127.0.0.1:65001" },
} as const;

interface Closable {
  close(): Promise<void>;
}

export interface UpHandle {
  scheduler: HostPort;
  seed: { api: HostPort; upload: HostPort; proxy: HostPort };
  peer: { api: HostPort; apiUrl: string; upload: HostPort; proxy: HostPort };
  demo?: { url: string; digest: string };
  // password: only on the manager's first start, when it was generated.
  manager?: { url: string; user: string; password?: string; passwordFromEnv: boolean; database: string };
  tls: { dir: string; ca: string; client: TlsFiles };
  close(): Promise<void>;
}

// The --tls-* settings of a component.
const tlsFlags = (f: TlsFiles) => ({ "tls.ca": f.ca, "tls.cert": f.cert, "tls.key": f.key });

// Both daemons share this machine: distinct host names keep them apart in
// the scheduler, and each one's certificate names its host.
const upHostname = (seed: boolean) => `${hostname()}-${seed ? "seed" : "peer"}`;

function daemonConfig(opts: UpConfig, seed: boolean, dataDir: string, schedulerAddr: string, tls: TlsFiles) {
  const ep = UP_ENDPOINTS[seed ? "seed" : "peer"];
  return loadConfig(daemonSchema, {
    envPrefix: "DAEMON",
    env: opts.clusterToken ? { DAMSELFLY_CLUSTER_TOKEN: opts.clusterToken } : {},
    flags: {
      seed,
      "scheduler.addresses": [schedulerAddr],
      dataDir,
      // The seed's API on TCP (mutual TLS) for the scheduler's triggers; the
      // peer's on the default socket, where `get` looks without --daemon.
      "server.listen": [seed ? ep.listen : `unix:${defaultDaemonSocket()}`],
      "upload.listen": ep.uploadListen,
      "proxy.listen": ep.proxyListen,
      "host.hostname": upHostname(seed),
      logLevel: opts.logLevel,
      ...tlsFlags(tls),
    },
  });
}

// Starts the components; on a failure part way, stops what started.
export async function startUp(opts: UpConfig, logger: Logger = createLogger(opts.logLevel as LogLevel)): Promise<UpHandle> {
  const base = resolve(opts.dataDir);
  const seedDir = join(base, "seed");
  const peerDir = join(base, "peer");
  await mkdir(seedDir, { recursive: true });
  await mkdir(peerDir, { recursive: true });

  const [{ Scheduler }, { Daemon }] = await Promise.all([import("../scheduler/index.js"), import("../peer/index.js")]);
  const started: Closable[] = [];
  const closeAll = async () => {
    // Peers first, so they do not spend the shutdown reconnecting.
    for (const c of started.reverse()) {
      await c.close().catch((err: unknown) => logger.warn({ err }, "close failed"));
    }
    started.length = 0;
  };

  try {
    const certs = await ensureUpCertificates(base, { seed: upHostname(true), peer: upHostname(false) });
    // The manager first, so the scheduler registers with it at once.
    const manager = opts.manager ? await startManager(opts, join(base, "manager"), certs, logger) : undefined;
    if (manager) started.push(manager.closable);
    const clusterToken = opts.clusterToken ? { clusterToken: opts.clusterToken } : {};
    const schedulerConfig = loadConfig(schedulerSchema, {
      envPrefix: "SCHEDULER",
      // One peer and one seed: the seed fetches (the default cold start) and
      // the peer takes it from the seed, so the demo shows bytes crossing.
      flags: {
        "server.listen": `127.0.0.1:${opts.schedulerPort}`,
        logLevel: opts.logLevel,
        ...(manager ? { "manager.url": manager.view.url } : {}),
        ...tlsFlags(certs.scheduler),
      },
    });
    const scheduler = new Scheduler({ config: schedulerConfig, logger: logger.child({ role: "scheduler" }), ...clusterToken });
    await scheduler.start();
    started.push(scheduler);
    const schedulerAddr = formatHostPort({ host: "127.0.0.1", port: scheduler.address.port });

    const seed = new Daemon({ config: daemonConfig(opts, true, seedDir, schedulerAddr, certs.seed), logger: logger.child({ role: "seed" }) });
    await seed.start();
    started.push(seed);
    const peer = new Daemon({ config: daemonConfig(opts, false, peerDir, schedulerAddr, certs.peer), logger: logger.child({ role: "peer" }) });
    await peer.start();
    started.push(peer);

    let demo: UpHandle["demo"];
    if (opts.demo) {
      const origin = await startDemoOrigin("127.0.0.1", opts.demoPort);
      started.push(origin);
      demo = { url: `http://${formatHostPort(origin.address)}${DEMO_PATH}`, digest: demoDigest() };
    }
    return {
      scheduler: { host: "127.0.0.1", port: scheduler.address.port },
      seed: { ...seed.endpoints },
      peer: { ...peer.endpoints },
      ...(demo ? { demo } : {}),
      ...(manager ? { manager: manager.view } : {}),
      tls: { dir: certs.dir, ca: certs.caFile, client: certs.client },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

// The manager of `up`: its generated root password comes straight from the
// Manager (not its one-time stdout line, which `up` replaces by its banner).
async function startManager(
  opts: UpConfig,
  dataDir: string,
  certs: UpCertificates,
  logger: Logger,
): Promise<{ closable: Closable; view: NonNullable<UpHandle["manager"]> }> {
  const { Manager } = await import("../manager/index.js");
  const config = loadConfig(managerSchema, {
    envPrefix: "MANAGER",
    flags: { "server.listen": `127.0.0.1:${opts.managerPort}`, dataDir, logLevel: opts.logLevel, ...tlsFlags(certs.manager) },
  });
  const m = new Manager({
    config,
    logger: logger.child({ role: "manager" }),
    ...(opts.adminPassword ? { adminPassword: opts.adminPassword } : {}),
    ...(opts.clusterToken ? { clusterToken: opts.clusterToken } : {}),
    announce: () => undefined,
  });
  await m.start();
  const password = m.generatedPassword;
  return {
    closable: m,
    view: {
      url: `https://${formatHostPort(m.address)}`,
      user: "root",
      passwordFromEnv: !!opts.adminPassword,
      database: m.databaseUrl,
      ...(password ? { password } : {}),
    },
  };
}

export function readyBanner(up: UpHandle, dataDir: string): string {
  const hp = formatHostPort;
  const peerApi = up.peer.apiUrl;
  // No --daemon when the peer is where `get` looks by default.
  const daemonFlag = peerApi === defaultDaemonTarget() ? "" : ` --daemon ${peerApi}`;
  return [
    "",
    "damselfly up: a local swarm is running",
    "",
    `  scheduler   ${hp(up.scheduler)}`,
    `  seed peer   api ${hp(up.seed.api)}   upload ${hp(up.seed.upload)}`,
    `  peer        api ${peerApi}   upload ${hp(up.peer.upload)}   proxy ${httpUrl(up.peer.proxy)}`,
    `  data        ${resolve(dataDir)}`,
    ...(up.manager
      ? [
          `  manager     console ${up.manager.url}/   API docs ${up.manager.url}/docs   database ${up.manager.database}`,
          up.manager.password
            ? `  sign in     user ${up.manager.user}   password ${up.manager.password}   (generated on first start and shown only now)`
            : `  sign in     user ${up.manager.user}   password ${up.manager.passwordFromEnv ? "from DAMSELFLY_ADMIN_PASSWORD" : "as printed on the first start (a new --data-dir starts afresh)"}`,
        ]
      : []),
    `  TLS         mutual TLS between the components, certificates in ${up.tls.dir}`,
    `              CA ${up.tls.ca} (trust it in your browser to open the console without a warning)`,
    `              client certificate for the APIs: ${dirname(up.tls.client.cert)}`,
    "",
    "Download a file through the swarm:",
    "",
    ...(up.demo
      ? [
          `  bin/damselfly get ${up.demo.url} -O /tmp/demo.bin --digest ${up.demo.digest}${daemonFlag}`,
          "",
          `  (${up.demo.url} is a built-in ${DEMO_SIZE / 2 ** 20} MiB demo origin; any http(s) URL works the same way.`,
          "   Run it twice: the second time every byte comes from the local peer.)",
        ]
      : [`  bin/damselfly get <url> -O /tmp/file${daemonFlag}`]),
    "",
    "Pull container images through the swarm (registry mirror on the peer's proxy port):",
    "",
    `  bin/damselfly init containerd --config-path /tmp/certs.d --registry <registry> --proxy ${httpUrl(up.peer.proxy)}`,
    `  ctr images pull --hosts-dir /tmp/certs.d <registry>/<image>:<tag>`,
    "",
    "Press Ctrl-C to stop.",
    "",
  ].join("\n");
}
