import { homedir } from "node:os";
import { join } from "node:path";
import { field, secretEnv, type ConfigOf } from "./config.js";
import { LOG_LEVELS } from "./logger.js";
import { watermarkCheck } from "./watermark.js";
import { clientTlsFields, daemonListenField, daemonTargetField, egressGroup, socketGroupField } from "./schemas-api.js";
import { proxyLimits, schedulerLimits, uploadLimits } from "./schemas-limits.js";
import { daemonSourceGroup, managerSourceGroup } from "./schemas-sources.js";
import { daemonKubernetesGroup } from "./schemas-kubernetes.js";
import { httpUrl, insecureField, positive, optionalAddress, optionalHttpUrl, regexList, tlsGroup } from "./schema-checks.js";
import { extenderGroup } from "./schemas-extender.js";

const logLevel = (v: string) => (LOG_LEVELS.includes(v as never) ? undefined : `must be one of ${LOG_LEVELS.join(", ")}`);

export const DEFAULT_SCHEDULER_PORT = 8002;
export const DEFAULT_DAEMON_API_PORT = 65000;
export const DEFAULT_PROXY_PORT = 65001;
export const DEFAULT_UPLOAD_PORT = 65002;
export const DEFAULT_MANAGER_PORT = 8080;
export const DEFAULT_REGISTRY = "https://index.docker.io";
// OCI/Docker blob URLs: content-addressed, so safe to share between clients.
export const DEFAULT_PROXY_RULE = "/v2/.+/blobs/sha256:[0-9a-f]{64}$";

const METRICS_LISTEN_HELP = "Prometheus /metrics plus /healthz and /readyz on this address (HOST:PORT; empty: off)";

export const ADMIN_PASSWORD_ENV = "DAMSELFLY_ADMIN_PASSWORD";
// The shared secret of the component RPCs (protocol/cluster-token.ts).
const clusterTokenField = () => secretEnv("DAMSELFLY_CLUSTER_TOKEN", "shared secret of the calls between components (env DAMSELFLY_CLUSTER_TOKEN only)");

export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? "/var/lib/damselfly" : join(homedir(), ".local", "share", "damselfly");
}

// The scheduler's scheduling knobs stay top-level YAML keys (the engine reads
// them, and the manager's dynamic config replaces some of them by name);
// they are hidden flags. server, manager and metrics are groups.
export const schedulerSchema = {
  candidateParentLimit: field(
    "int",
    8,
    "candidate parents handed to a peer per scheduling decision (a peer sees which pieces each holds and spreads its requests over them)",
    { check: positive, flag: false, legacy: "candidateParentLimit" },
  ),
  filterParentLimit: field("int", 15, "peers of a task sampled when choosing parents", { check: positive, flag: false, legacy: "filterParentLimit" }),
  backToSourceLimit: field("int", 3, "peers of one task that may fetch from the origin at once", { flag: false, legacy: "backToSourceLimit" }),
  retryLimit: field("int", 4, "reschedules before a peer is sent back to the origin", { check: positive, flag: false, legacy: "retryLimit" }),
  coldStart: field(
    "string",
    "seed",
    "who fetches a task nobody has yet: seed (a seed peer fetches it and every requester takes it from there: best when many nodes start at once) or peer (the first requester fetches it itself, one hop less; a seed peer copies it from that peer)",
    {
      check: (v) => (v === "peer" || v === "seed" ? undefined : "must be peer or seed"),
      flag: false,
      legacy: "coldStart",
    },
  ),
  seedCopyDelay: field("duration", 30_000, "with coldStart=peer: how long after a task's first peer finishes a seed peer copies it", {
    flag: false,
    legacy: "seedCopyDelay",
  }),
  seedWait: field("duration", 15_000, "how long a peer waits for a triggered seed peer before going to the origin", { flag: false, legacy: "seedWait" }),
  hostTimeout: field("duration", 30_000, "hosts not heard from for this long are removed with their peers", { flag: false, legacy: "hostTimeout" }),
  normalUploadSlots: field("int", 200, "default upload slots of a normal peer (children at once)", {
    check: positive,
    flag: false,
    legacy: "normalUploadSlots",
  }),
  seedUploadSlots: field("int", 2000, "default upload slots of a seed peer", { check: positive, flag: false, legacy: "seedUploadSlots" }),
  logLevel: field("string", "info", "log level", { check: logLevel }),
  server: {
    listen: field("address", `0.0.0.0:${DEFAULT_SCHEDULER_PORT}`, "gRPC/Connect listen address", { flag: true, legacy: "listen" }),
    advertiseIp: field(
      "string",
      "",
      "address the manager and daemons use to reach this scheduler (default: the listen address, or the first non-loopback IPv4)",
      { flag: true, legacy: "advertiseIp" },
    ),
  },
  manager: {
    url: field("string", "", "manager URL (http://HOST:PORT): register with it, keep alive and take the cluster's dynamic config from it (empty: no manager)", {
      check: optionalHttpUrl,
      flag: true,
      legacy: "manager",
    }),
    clusterId: field("int", 1, "scheduler cluster this scheduler serves (with --manager)", { check: positive, flag: true, legacy: "clusterId" }),
    interval: field("duration", 3_000, "keep-alive interval to the manager (cluster config changes reach the scheduler within it)", {
      check: positive,
      legacy: "managerInterval",
    }),
  },
  metrics: {
    listen: field("string", "", METRICS_LISTEN_HELP, { check: optionalAddress, flag: true, legacy: "metricsListen" }),
  },
  limits: schedulerLimits(),
  tls: tlsGroup(),
  insecure: insecureField(),
  security: {
    clusterToken: clusterTokenField(),
  },
};
export type SchedulerConfig = ConfigOf<typeof schedulerSchema>;

// The daemon's YAML groups follow Dragonfly's dfdaemon; only the common few
// keys are flags (flag: true), the rest keep their old flat name as a hidden
// flag and a deprecated top-level YAML key (legacy).
export const daemonSchema = {
  seed: field("bool", false, "run as a seed peer (fetches from the origin when the swarm is cold)"),
  dataDir: field("string", defaultDataDir(), "where task data and metadata live"),
  logLevel: field("string", "info", "log level", { check: logLevel }),
  host: {
    hostname: field("string", "", "host name reported to the scheduler (default: os.hostname())", { flag: true, legacy: "hostname" }),
    advertiseIp: field("string", "", "address other peers use to reach this daemon (default: the upload listen address, or the first non-loopback IPv4)", {
      flag: true,
      legacy: "advertiseIp",
    }),
  },
  server: {
    listen: daemonListenField(),
    socketGroup: socketGroupField(),
    shutdownTimeout: field(
      "duration",
      30_000,
      "on SIGTERM/SIGINT: how long piece uploads in flight may take to finish before the daemon exits (new work is refused at once)",
      { legacy: "shutdownTimeout" },
    ),
  },
  manager: {
    url: field("string", "", "manager URL: take the scheduler addresses from it at start (the --scheduler list is the fallback)", {
      check: optionalHttpUrl,
      flag: true,
      legacy: "manager",
    }),
    clusterId: field("int", 0, "with --manager: use this scheduler cluster's schedulers (0: any cluster)", { legacy: "clusterId" }),
    refresh: field("duration", 30_000, "with --manager: how often the scheduler list is asked for again", { check: positive, legacy: "managerRefresh" }),
  },
  scheduler: {
    addresses: field("list", [`127.0.0.1:${DEFAULT_SCHEDULER_PORT}`] as string[], "scheduler addresses (HOST:PORT, comma-separated)", {
      flag: true,
      legacy: "scheduler",
    }),
    connectTimeout: field("duration", 3_000, "give up on the scheduler after this long and go to the origin", { legacy: "schedulerConnectTimeout" }),
    registerTimeout: field(
      "duration",
      1_000,
      "a scheduler that has not taken a download's registration within this long is taken for hung: the download goes to the next scheduler",
      { check: positive },
    ),
    announceInterval: field("duration", 10_000, "host keep-alive interval to the scheduler", { legacy: "announceInterval" }),
    scheduleTimeout: field("duration", 10_000, "with no usable parent for this long, ask the scheduler again", { legacy: "scheduleTimeout" }),
  },
  download: {
    piecesInFlight: field("int", 16, "pieces downloaded concurrently per task", { check: positive, legacy: "piecesInFlight" }),
    piecesPerParent: field("int", 4, "most pieces requested at once from one parent (with many parents, fewer: piecesInFlight spread over them)", {
      check: positive,
      legacy: "piecesPerParent",
    }),
    pieceTimeout: field("duration", 30_000, "a piece that makes no progress for this long is abandoned and fetched elsewhere", { legacy: "pieceTimeout" }),
    totalRateLimit: field(
      "bytes",
      0,
      "bytes per second this host downloads in all (from peers and origins; e.g. 100MiB; 0: unlimited); real-time pulls go first, preheats and prefetches get what is left",
      { legacy: "totalDownloadRateLimit" },
    ),
    perTaskRateLimit: field(
      "bytes",
      0,
      "default bytes per second of one task's download (0: unlimited); a request's own limit (get --rate-limit, X-Damselfly-Rate-Limit) replaces it",
      { legacy: "perTaskRateLimit" },
    ),
    backToSourceRateLimit: field("bytes", 0, "bytes per second this host fetches from origins in all (0: unlimited)", { legacy: "backToSourceRateLimit" }),
    maxContentLength: field(
      "bytes",
      1024 ** 4,
      "largest task accepted (e.g. 1TiB): a content length over it, from the origin, a parent or the scheduler, is refused before anything is allocated",
      { check: positive },
    ),
  },
  source: {
    timeout: field("duration", 30_000, "origin connect and header timeout", { legacy: "sourceTimeout" }),
    ca: field("string", "", "PEM file of extra CA certificates trusted for HTTPS origins (added to the system roots)", { legacy: "sourceCa" }),
    egress: egressGroup(),
    ...daemonSourceGroup(),
  },
  upload: {
    listen: field("address", `0.0.0.0:${DEFAULT_UPLOAD_PORT}`, "piece upload (data plane) listen address", { flag: true, legacy: "uploadListen" }),
    slots: field("int", 0, "children the scheduler may give this host at once (0: the scheduler's default, 200, or 2000 for a seed)", {
      legacy: "uploadSlots",
    }),
    concurrency: field("int", 0, "piece uploads streamed at once; more requests wait in line (0: 4, or 8 in seed mode)", { legacy: "uploadConcurrency" }),
    superSeeding: field(
      "bool",
      true,
      "in seed mode: until every piece has been offered once, suggest to each child pieces no other child was offered, so the seed's uplink sends new pieces rather than copies",
      { legacy: "superSeeding" },
    ),
    totalRateLimit: field("bytes", 0, "bytes per second this host uploads to other peers in all (0: unlimited)", { legacy: "totalUploadRateLimit" }),
    ...uploadLimits(),
  },
  proxy: {
    listen: field("address", `127.0.0.1:${DEFAULT_PROXY_PORT}`, "registry mirror / HTTP proxy listen address", { flag: true, legacy: "proxyListen" }),
    registryMirror: field("string", DEFAULT_REGISTRY, "upstream for mirror requests that name no registry (no X-Damselfly-Registry header, no ns= parameter)", {
      check: httpUrl,
      legacy: "registryMirror",
    }),
    plainHttpRegistries: field(
      "list",
      [] as string[],
      "registries (host[:port]) reached over plain http when named without a scheme; loopback hosts always are",
      { legacy: "plainHttpRegistries" },
    ),
    rules: field("list", [DEFAULT_PROXY_RULE] as string[], "regular expressions: GET URLs through the proxy that match go through P2P (others are forwarded)", {
      check: regexList,
      legacy: "proxyRules",
    }),
    intercept: field(
      "list",
      [] as string[],
      "regular expressions of host:port whose CONNECT tunnels are TLS-terminated with the proxy CA (others are tunnelled untouched)",
      { check: regexList, legacy: "proxyIntercept" },
    ),
    caCert: field("string", "", "proxy CA certificate, PEM (default: <data-dir>/proxy-ca/ca.crt, generated on first start)", { legacy: "proxyCaCert" }),
    caKey: field("string", "", "proxy CA private key, PEM PKCS#8 (default: <data-dir>/proxy-ca/ca.key)", { legacy: "proxyCaKey" }),
    authTtl: field("duration", 60_000, "how long a registry's yes to 'may this client read this blob' is reused", { legacy: "proxyAuthTtl" }),
    minP2pSize: field("bytes", 1024 * 1024, "objects smaller than this go straight to the origin (P2P costs more than it saves)", {
      legacy: "proxyMinP2pSize",
    }),
    prefetch: field("bool", false, "a range request for an object not on this node also starts downloading the whole object in the background", {
      legacy: "proxyPrefetch",
    }),
    stallTimeout: field("duration", 20_000, "a proxied P2P response with no progress for this long continues from the origin", { legacy: "proxyStallTimeout" }),
    ...proxyLimits(),
  },
  kubernetes: daemonKubernetesGroup(),
  gc: {
    taskTtl: field("duration", 6 * 3_600_000, "disk GC: a stored task not read, uploaded or downloaded for this long is removed (0: never)", {
      legacy: "taskTtl",
    }),
    interval: field("duration", 60_000, "disk GC: how often TTL and watermarks are checked (0: only on demand, `damselfly cache prune`)", {
      legacy: "gcInterval",
    }),
    highWatermark: field(
      "string",
      "80%",
      "disk GC: when Damselfly's own task files take more than this (a size like 20GiB, or a percentage of the data dir's filesystem size; 0: off), least recently used idle tasks are removed",
      { check: watermarkCheck, legacy: "diskGcHighWatermark" },
    ),
    lowWatermark: field("string", "60%", "disk GC: ...until they take at most this (size or percentage; 0: every idle task)", {
      check: watermarkCheck,
      legacy: "diskGcLowWatermark",
    }),
  },
  metrics: {
    listen: field("string", "", METRICS_LISTEN_HELP, { check: optionalAddress, flag: true, legacy: "metricsListen" }),
  },
  tls: tlsGroup(),
  insecure: insecureField(),
  security: {
    clusterToken: clusterTokenField(),
  },
};
export type DaemonConfig = ConfigOf<typeof daemonSchema>;

// Where s3:// URLs go (the object store's endpoint, region, addressing).
function s3Fields() {
  return {
    s3Endpoint: field("string", "", "S3 endpoint URL for s3:// URLs (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)"),
    s3Region: field("string", "", "S3 region for s3:// URLs (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)"),
    s3PathStyle: field("bool", false, "address S3 buckets in the path, not the host name (MinIO, Ceph and most S3-compatible stores)"),
  };
}

export const getSchema = {
  output: field("string", "", "output file, or - for stdout", { short: "-O" }),
  digest: field("string", "", "expected digest: sha256:HEX, sha512:HEX, crc32:HEX or gitsha1:HEX (a git blob id)"),
  header: field("list", [] as string[], "header passed to the origin, 'Name: value' (repeatable)", { short: "-H" }),
  tag: field("string", "", "task tag (different tags make different tasks)"),
  application: field("string", "", "application name (part of the task ID)"),
  filter: field("list", [] as string[], "extra query parameters to ignore in the task ID (repeatable or comma-separated)"),
  priority: field("int", 0, "download priority (0-6)", { check: (v) => (v >= 0 && v <= 6 ? undefined : "must be 0..6") }),
  pieceLength: field("bytes", 0, "fixed piece length (default: derived from the content length)"),
  timeout: field("duration", 0, "give up after this long (e.g. 30s, 10m; 0: no limit)"),
  disableBackToSource: field("bool", false, "never fetch from the origin: fail if no peer can serve"),
  daemon: daemonTargetField(),
  ...clientTlsFields(),
  progress: field("bool", true, "show a progress bar on a TTY (--no-progress to hide)"),
  rateLimit: field("bytes", 0, "download this task at most this many bytes per second (e.g. 50MiB; 0: the daemon's perTaskRateLimit)"),
  ...s3Fields(),
  hfRevision: field("string", "main", "Hugging Face Hub revision for hf:// URLs: a branch, tag or commit"),
  hfEndpoint: field("string", "", "Hugging Face Hub endpoint for hf:// URLs, e.g. a mirror (default: HF_ENDPOINT, else https://huggingface.co)"),
  recursive: field("bool", false, "download an hf:// repository or folder, or an s3:// prefix, into the -O directory, one task per file", { short: "-r" }),
  include: field("list", [] as string[], "with -r: only paths matching this glob (repeatable)"),
  exclude: field("list", [] as string[], "with -r: skip paths matching this glob (repeatable)"),
  concurrency: field("int", 4, "with -r: files downloaded at once", { check: (v) => (v >= 1 && v <= 64 ? undefined : "must be 1..64") }),
};
export type GetConfig = ConfigOf<typeof getSchema>;

export const managerSchema = {
  dataDir: field("string", join(defaultDataDir(), "manager"), "where the embedded database lives"),
  logLevel: field("string", "info", "log level", { check: logLevel }),
  server: {
    listen: field("address", `127.0.0.1:${DEFAULT_MANAGER_PORT}`, "REST API, open API, console and component RPC listen address", {
      flag: true,
      legacy: "listen",
    }),
    sessionTtl: field("duration", 24 * 3_600_000, "how long a sign-in session token stays valid", { check: positive, legacy: "sessionTtl" }),
  },
  database: {
    url: field("string", "", "sqlite:PATH (embedded, the default: sqlite:<dataDir>/manager.db) or postgres://USER:PASS@HOST:PORT/DB", {
      check: (v) => (v === "" || v.startsWith("sqlite:") || /^postgres(ql)?:\/\//.test(v) ? undefined : "must be sqlite:PATH or postgres://..."),
      flag: true,
      legacy: "database",
    }),
  },
  scheduler: {
    timeout: field("duration", 30_000, "a scheduler not heard from for this long is shown inactive and gets no jobs", {
      check: positive,
      legacy: "schedulerTimeout",
    }),
  },
  jobs: {
    preheatTimeout: field("duration", 30 * 60_000, "how long one preheat job may run", { check: positive, legacy: "preheatTimeout" }),
  },
  source: managerSourceGroup(),
  extender: extenderGroup(),
  audit: {
    maxRows: field("int", 100_000, "audit log rows kept: older ones are deleted as new ones come", { check: positive }),
    maxAge: field("duration", 90 * 24 * 3_600_000, "audit log rows older than this are deleted", { check: positive }),
  },
  metrics: {
    listen: field("string", "", METRICS_LISTEN_HELP, { check: optionalAddress, flag: true, legacy: "metricsListen" }),
  },
  tls: tlsGroup(),
  insecure: insecureField(),
  security: {
    clusterToken: clusterTokenField(),
    adminPassword: secretEnv(
      ADMIN_PASSWORD_ENV,
      "the root user's password on the manager's first start (else one is generated and shown once; env DAMSELFLY_ADMIN_PASSWORD only)",
    ),
  },
};
export type ManagerConfig = ConfigOf<typeof managerSchema>;

export const preheatSchema = {
  manager: field("string", `http://127.0.0.1:${DEFAULT_MANAGER_PORT}`, "manager URL", { check: httpUrl }),
  token: field("string", "", "personal access token with the job scope (better in DAMSELFLY_PREHEAT_TOKEN than on the command line)", { secret: true }),
  type: field("string", "", "file or image (default: image when the argument is not an http(s) URL or is a /v2/.../manifests/... URL)", {
    check: (v) => (v === "" || v === "file" || v === "image" ? undefined : "must be file or image"),
  }),
  scope: field("string", "single_seed_peer", "single_seed_peer, all_seed_peers or all_peers", {
    check: (v) => (["single_seed_peer", "all_seed_peers", "all_peers"].includes(v) ? undefined : "must be single_seed_peer, all_seed_peers or all_peers"),
  }),
  platform: field("string", "linux/amd64", "image platform picked from an image index (os/arch[/variant])"),
  header: field("list", [] as string[], "header sent to the origin or registry, 'Name: value' (repeatable)", { short: "-H" }),
  clusterId: field("list", [] as string[], "scheduler cluster IDs (default: every cluster)"),
  timeout: field("duration", 30 * 60_000, "give up waiting after this long"),
  wait: field("bool", true, "wait until the job ends (--no-wait: print its id and return)"),
  recursive: field("bool", false, "preheat every file of an hf:// repository or folder, or under an s3:// prefix, one task per file", { short: "-r" }),
  include: field("list", [] as string[], "with -r: only paths matching this glob (repeatable)"),
  exclude: field("list", [] as string[], "with -r: skip paths matching this glob (repeatable)"),
  hfRevision: field("string", "", "Hugging Face Hub revision for hf:// URLs: a branch, tag or commit (default main); the token is HF_TOKEN"),
};
export type PreheatConfig = ConfigOf<typeof preheatSchema>;

// `damselfly cache list|rm|prune`: the local daemon's store.
export const cacheSchema = {
  daemon: daemonTargetField(),
  ...clientTlsFields(),
  clusterToken: clusterTokenField(),
};
export type CacheConfig = ConfigOf<typeof cacheSchema>;

const port = (v: number) => (v >= 0 && v <= 65535 ? undefined : "must be a port, 0..65535");

// `damselfly up`: a local swarm on fixed ports.
export const upSchema = {
  dataDir: field("string", join(homedir(), ".damselfly", "up"), "base directory for the seed and peer data"),
  schedulerPort: field("int", DEFAULT_SCHEDULER_PORT, "scheduler port", { check: port }),
  demoPort: field("int", 65080, "port of the built-in demo origin serving /demo.bin", { check: port }),
  demo: field("bool", true, "start the demo origin (--no-demo: do not)"),
  managerPort: field("int", DEFAULT_MANAGER_PORT, "manager (console, API) port", { check: port }),
  manager: field("bool", true, "start the manager (--no-manager: do not)"),
  logLevel: field("string", "warn", "log level", { check: logLevel }),
  clusterToken: clusterTokenField(),
  adminPassword: secretEnv(ADMIN_PASSWORD_ENV, "the root user's password on the manager's first start (env DAMSELFLY_ADMIN_PASSWORD only)"),
};
export type UpConfig = ConfigOf<typeof upSchema>;
