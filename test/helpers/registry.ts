// A real OCI registry for the registry-mirror tests: Debian's docker-registry
// (distribution 2.8) serving from a filesystem store under a test dir, on
// 127.0.0.1 (or inside a test network namespace), optionally with htpasswd
// (bcrypt) basic auth and TLS, and an access log the tests can count bytes in.
//
// Two logs come out of docker-registry 2.8, both read here:
// - stdout: with log.accesslog on, one Apache "combined" line per request,
//   every request, 401s included:
//     127.0.0.1 - - [22/Nov/2026:16:56:12 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
//   The size is the body bytes written to the response, the same counter
//   as the JSON log's http.response.written. accessLog() parses these.
// - stderr: log.formatter json; per request a "response completed" line
//   (2xx/3xx) or "response completed with error" (4xx/5xx from handlers) with
//   http.request.method/uri, http.response.status/written, ... Requests
//   refused by auth (401) get only a warning line ("error authorizing
//   context: ...") without response fields, hence the stdout log as the
//   source of truth. The parsed JSON lines are in registry.logs.
import { selfSignedArgs } from "./pki.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { join, resolve } from "node:path";
import { commandEnv, mustRun, runCommand, trackChild, watchExit } from "./netns.js";
import type { Cleanup } from "./procs.js";

export interface RegistryOptions {
  // Config, data (dir/data) and htpasswd go here. Created if missing.
  dir: string;
  // htpasswd (bcrypt) basic auth with one user.
  auth?: { user: string; password: string };
  // Serve HTTPS with this certificate (see makeTestCert).
  tls?: { certFile: string; keyFile: string };
  // Listen address (default 127.0.0.1; required with netns: the namespace's IP).
  host?: string;
  // 0 (default): the registry picks a free port, read back from its log.
  port?: number;
  // Run inside `ip netns exec <netns>`.
  netns?: string;
  // Stop at the end of this test/suite.
  t?: Cleanup;
  // Echo the registry's stderr (JSON log) to this process's stderr.
  echo?: boolean;
  readyTimeoutMs?: number;
}

export interface AccessEntry {
  // Client address as the registry saw it (no port).
  remote: string;
  // As logged by the registry: "[22/Nov/2026:16:56:12 +0000]" without brackets.
  time: string;
  method: string;
  // Path plus query string, as requested.
  uri: string;
  // uri without the query string.
  path: string;
  status: number;
  // Response body bytes written (= the JSON log's http.response.written).
  // For HEAD this is what the handler wrote and net/http discarded (e.g. a
  // manifest HEAD logs the manifest's size), not bytes on the wire.
  bytes: number;
  userAgent: string;
}

export interface RegistryLogLine {
  level: string;
  msg: string;
  time?: string;
  [field: string]: unknown;
}

export interface Registry {
  // "http://127.0.0.1:PORT" (https:// with tls).
  readonly url: string;
  // "127.0.0.1:PORT": what image references start with.
  readonly hostPort: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  // Parsed JSON log lines (stderr) so far.
  readonly logs: readonly RegistryLogLine[];
  stdout(): string;
  stderr(): string;
  // The access log, once the registry has been quiet for a moment (a line is
  // written just after its response's last byte, so a client can finish
  // first). Entries before the last resetAccessLog() are left out.
  accessLog(): Promise<AccessEntry[]>;
  // The access log as read so far, without waiting.
  accessLogNow(): AccessEntry[];
  // Body bytes of successful (200/206) GETs of /v2/<name>/blobs/<digest>,
  // from the entries read so far (await accessLog() first to settle).
  blobBytesSent(digest: string): number;
  // Forget the access log so far (e.g. after pushing the test image).
  resetAccessLog(): void;
  readonly running: boolean;
  // SIGTERM, SIGKILL after graceMs; resolves when the process is gone.
  stop(graceMs?: number): Promise<void>;
}

const COMBINED_RE = /^(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)"\s*$/;

export function parseAccessLine(line: string): AccessEntry | undefined {
  const m = COMBINED_RE.exec(line);
  if (!m) return undefined;
  const uri = m[4]!;
  return {
    remote: m[1]!,
    time: m[2]!,
    method: m[3]!,
    uri,
    path: uri.split("?")[0]!,
    status: Number(m[5]),
    bytes: m[6] === "-" ? 0 : Number(m[6]),
    userAgent: m[7]!,
  };
}

// Sum of body bytes of 200/206 GETs of any repository's blobs/<digest>.
export function blobBytesSent(entries: readonly AccessEntry[], digest: string): number {
  const suffix = `/blobs/${digest}`;
  let n = 0;
  for (const e of entries) {
    if (e.method === "GET" && (e.status === 200 || e.status === 206) && e.path.startsWith("/v2/") && e.path.endsWith(suffix)) n += e.bytes;
  }
  return n;
}

function tail(s: string, n = 4000): string {
  return s.length > n ? "..." + s.slice(-n) : s;
}

function yamlString(s: string): string {
  return JSON.stringify(s);
}

// One GET of /v2/; resolves the status, or 0 when nothing answers.
function probe(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const mod = url.startsWith("https:") ? https : http;
    const req = mod.get(url, { timeout: timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
      res.once("error", () => resolve(0));
    });
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", () => resolve(0));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startRegistry(o: RegistryOptions): Promise<Registry> {
  if (o.netns && !o.host) throw new Error("startRegistry: with netns, give host (the namespace's address, e.g. 10.213.1.2)");
  const host = o.host ?? "127.0.0.1";
  const dir = resolve(o.dir);
  const dataDir = join(dir, "data");
  mkdirSync(dataDir, { recursive: true });

  const cfg: string[] = [
    "version: 0.1",
    "log:",
    "  level: info",
    "  formatter: json",
    "  accesslog:",
    "    disabled: false",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${yamlString(dataDir)}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: ${yamlString(`${host}:${o.port ?? 0}`)}`,
    `  secret: ${yamlString(randomBytes(16).toString("hex"))}`,
  ];
  if (o.tls) {
    cfg.push("  tls:", `    certificate: ${yamlString(resolve(o.tls.certFile))}`, `    key: ${yamlString(resolve(o.tls.keyFile))}`);
  }
  if (o.auth) {
    const hp = await mustRun("htpasswd", ["-Bbn", o.auth.user, o.auth.password], { timeoutMs: 30_000 });
    const htpasswdFile = join(dir, "htpasswd");
    writeFileSync(htpasswdFile, hp.stdout.trim() + "\n", { mode: 0o600 });
    cfg.push("auth:", "  htpasswd:", "    realm: damselfly-test", `    path: ${yamlString(htpasswdFile)}`);
  }
  const configFile = join(dir, "config.yml");
  writeFileSync(configFile, cfg.join("\n") + "\n");

  const argv = ["docker-registry", "serve", configFile];
  const full = o.netns ? ["ip", "netns", "exec", o.netns, ...argv] : argv;
  // REGISTRY_* variables in the runner's environment would override the config.
  const env = commandEnv();
  for (const k of Object.keys(env)) if (k.startsWith("REGISTRY_")) delete env[k];
  const child = spawn(full[0]!, full.slice(1), { env, stdio: ["ignore", "pipe", "pipe"], cwd: dir });
  trackChild(child);

  let out = "";
  let err = "";
  let outPartial = "";
  let errPartial = "";
  let lastOutputAt = Date.now();
  const access: AccessEntry[] = [];
  let accessStart = 0;
  const logs: RegistryLogLine[] = [];
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => {
    out += s;
    lastOutputAt = Date.now();
    outPartial += s;
    const lines = outPartial.split("\n");
    outPartial = lines.pop()!;
    for (const line of lines) {
      const e = parseAccessLine(line);
      if (e) access.push(e);
    }
  });
  child.stderr!.on("data", (s: string) => {
    err += s;
    lastOutputAt = Date.now();
    if (o.echo) process.stderr.write(s);
    errPartial += s;
    const lines = errPartial.split("\n");
    errPartial = lines.pop()!;
    for (const line of lines) {
      const t = line.trim();
      if (!t.startsWith("{")) continue;
      try {
        const l = JSON.parse(t) as RegistryLogLine;
        if (l && typeof l.msg === "string") logs.push(l);
      } catch {
        // not JSON
      }
    }
  });
  const watch = watchExit(child);

  const stop = (graceMs = 3_000) => watch.terminate(graceMs);
  const fail = async (why: string): Promise<never> => {
    await stop(0);
    throw new Error(`docker-registry (${configFile}) ${why}\n--- stderr ---\n${tail(err)}\n--- stdout ---\n${tail(out)}`);
  };

  // The port: "listening on 127.0.0.1:PORT" (", tls" appended with TLS).
  const readyTimeout = o.readyTimeoutMs ?? 20_000;
  const deadline = Date.now() + readyTimeout;
  let port = 0;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    const l = logs.find((x) => x.msg.startsWith("listening on "));
    if (l) {
      const m = /:(\d+)(?:,|$)/.exec(l.msg.slice("listening on ".length));
      if (m) port = Number(m[1]);
      break;
    }
    if (!watch.running) return fail(`${watch.info} before listening`);
    await sleep(20);
  }
  if (!port) return fail(`did not log "listening on" within ${readyTimeout}ms`);

  const scheme = o.tls ? "https" : "http";
  const hostPort = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const url = `${scheme}://${hostPort}`;
  let lastStatus = 0;
  for (let i = 0; i < 1_000 && Date.now() < deadline; i++) {
    lastStatus = await probe(`${url}/v2/`, 2_000);
    if (lastStatus === 200 || (o.auth && lastStatus === 401)) break;
    if (!watch.running) return fail(`${watch.info} before answering /v2/`);
    await sleep(50);
  }
  if (!(lastStatus === 200 || (o.auth && lastStatus === 401))) return fail(`/v2/ did not answer within ${readyTimeout}ms (last status ${lastStatus})`);

  const registry: Registry = {
    url,
    hostPort,
    host,
    port,
    dir,
    pid: child.pid ?? -1,
    logs,
    stdout: () => out,
    stderr: () => err,
    async accessLog() {
      // At least 100ms, then until quiet for 150ms; at most 3s.
      await sleep(100);
      const until = Date.now() + 3_000;
      for (let i = 0; i < 100 && Date.now() < until && watch.running && Date.now() - lastOutputAt < 150; i++) await sleep(50);
      return access.slice(accessStart);
    },
    accessLogNow: () => access.slice(accessStart),
    blobBytesSent: (digest) => blobBytesSent(access.slice(accessStart), digest),
    resetAccessLog() {
      accessStart = access.length;
    },
    get running() {
      return watch.running;
    },
    stop,
  };
  o.t?.after(() => registry.stop());
  return registry;
}

export interface TestCert {
  // PEM certificate (self-signed, CA:TRUE, so it is its own CA).
  certFile: string;
  keyFile: string;
  // The certificate again, as the only file of a directory: for skopeo's
  // --dest-cert-dir/--src-cert-dir (which take *.crt as CAs, and want a
  // *.cert for every *.key, so the key must not be there).
  certDir: string;
}

// A self-signed certificate for the given IPs (and DNS names), valid 2 days.
export async function makeTestCert(dir: string, o: { ips?: string[]; dnsNames?: string[] } = {}): Promise<TestCert> {
  const d = resolve(dir);
  mkdirSync(join(d, "ca"), { recursive: true });
  const certFile = join(d, "cert.pem");
  const keyFile = join(d, "key.pem");
  const san = [...(o.ips ?? ["127.0.0.1"]).map((ip) => `IP:${ip}`), ...(o.dnsNames ?? []).map((n) => `DNS:${n}`)].join(",");
  await mustRun(
    "openssl",
    selfSignedArgs(keyFile, certFile, "/CN=damselfly-test-registry", 2, [
      `subjectAltName=${san}`,
      "basicConstraints=critical,CA:TRUE",
      "keyUsage=critical,digitalSignature,keyCertSign",
    ]),
    { timeoutMs: 30_000 },
  );
  copyFileSync(certFile, join(d, "ca", "ca.crt"));
  return { certFile, keyFile, certDir: join(d, "ca") };
}

// True if docker-registry is installed (for skipping tests where it is not).
export async function haveRegistry(): Promise<boolean> {
  return runCommand("docker-registry", ["--version"], { timeoutMs: 10_000 }).then(
    (r) => r.code === 0,
    () => false,
  );
}
