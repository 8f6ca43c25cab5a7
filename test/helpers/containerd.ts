// A private containerd for the registry-mirror tests: root, state and sockets
// under a test dir, the CRI plugin (and so every TCP listener) disabled, and
// `ctr images pull` against it with a hosts dir (hosts.toml), the way a
// node's containerd is pointed at a registry mirror.
//
// Note: with ctr, the registry/mirror HTTP requests are made by the ctr
// process itself (containerd's remotes/docker resolver, linked into ctr);
// the daemon stores the content and unpacks the layers into snapshots.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { commandEnv, runCommand, trackChild, watchExit, type CommandResult } from "./netns.js";
import type { Cleanup } from "./procs.js";

export interface ContainerdOptions {
  // Stop at the end of this test/suite.
  t?: Cleanup;
  // Echo the daemon's log to this process's stderr.
  echo?: boolean;
  readyTimeoutMs?: number;
  // Log level for the daemon (default "info").
  logLevel?: string;
  // Enable the CRI plugin (what the kubelet talks to; its pulls use the
  // registry config_path of config.toml, not ctr's --hosts-dir), with this
  // config_path. Its streaming server binds 127.0.0.1 on a random port.
  // Without configPath: the CRI plugin with no config_path (what onboarding
  // must change, with a restart).
  cri?: { configPath?: string };
  // Start on the config.toml an earlier start wrote in dir (as edited since,
  // e.g. by `damselfly init containerd --restart`).
  keepConfig?: boolean;
}

export interface PullOptions {
  // --hosts-dir: a directory of <host[:port]>/hosts.toml (see writeHostsToml).
  hostsDir: string;
  // --plain-http: default the scheme to http for hosts without a hosts.toml
  // `server`/`[host."http://..."]` (hosts.toml schemes win either way).
  plainHttp?: boolean;
  // --user "user:password" (or { user, password }).
  user?: string | { user: string; password: string };
  // --snapshotter (default: containerd's default, overlayfs).
  snapshotter?: string;
  // --platform (default: this machine's, linux/amd64 here).
  platform?: string;
  // Extra ctr arguments before the ref (e.g. "--http-dump").
  args?: string[];
  // Environment for ctr (e.g. HTTP_PROXY: the requests come from ctr).
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

export interface PullResult extends CommandResult {
  argv: string[];
  // `ctr images check` says the image is complete and unpacked (for the
  // snapshotter pulled with).
  unpacked: boolean;
  // Its line from `ctr images check` (REF TYPE DIGEST STATUS SIZE UNPACKED).
  check: string;
}

export interface Containerd {
  readonly dir: string;
  // The gRPC socket, for `ctr -a`.
  readonly socket: string;
  readonly configFile: string;
  // The namespace pull() uses ("test").
  readonly namespace: string;
  readonly pid: number;
  readonly running: boolean;
  stderr(): string;
  // `ctr -a <socket> -n test <args>` to completion.
  ctr(args: readonly string[], opts?: { env?: Record<string, string | undefined>; timeoutMs?: number }): Promise<CommandResult>;
  pull(ref: string, o: PullOptions): Promise<PullResult>;
  // `ctr images check` lines for refs containing `ref` (all without it).
  check(ref?: string, snapshotter?: string): Promise<string[]>;
  // Removes the image (synchronously garbage-collecting its content and
  // snapshots), so a later pull downloads everything again.
  removeImage(ref: string): Promise<void>;
  // SIGTERM (SIGKILL after graceMs), then unmounts anything left mounted
  // under dir. Idempotent.
  stop(graceMs?: number): Promise<void>;
}

export const CONTAINERD_NAMESPACE = "test";

function tail(s: string, n = 4000): string {
  return s.length > n ? "..." + s.slice(-n) : s;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

// Mount points at or below dir, deepest first.
export function mountsUnder(dir: string): string[] {
  const root = resolve(dir);
  const found: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    const mp = unescapeMountPath(f[4]!);
    if (mp === root || mp.startsWith(root + "/")) found.push(mp);
  }
  return found.sort((a, b) => b.length - a.length);
}

// Unmounts (lazily if need be) every mount at or below dir; bounded.
export async function unmountUnder(dir: string): Promise<string[]> {
  const done: string[] = [];
  for (let round = 0; round < 5; round++) {
    const mps = mountsUnder(dir);
    if (!mps.length) break;
    for (const mp of mps) {
      const r = await runCommand("umount", [mp], { timeoutMs: 10_000 });
      if (r.code !== 0) await runCommand("umount", ["-l", mp], { timeoutMs: 10_000 });
      done.push(mp);
    }
  }
  return done;
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

export async function startContainerd(dir: string, o: ContainerdOptions = {}): Promise<Containerd> {
  const base = resolve(dir);
  mkdirSync(base, { recursive: true });
  const root = join(base, "root");
  const state = join(base, "state");
  const socket = join(base, "containerd.sock");
  // sun_path is 108 bytes, the ttrpc socket adds ".ttrpc".
  if (Buffer.byteLength(socket) + 7 > 107) throw new Error(`startContainerd: ${socket} is too long for a unix socket path; use a shorter dir`);
  // Leftovers of an earlier run on the same dir (a crashed test).
  await unmountUnder(base);
  mkdirSync(root, { recursive: true });
  mkdirSync(state, { recursive: true });
  const config = [
    "version = 2",
    `root = ${tomlString(root)}`,
    `state = ${tomlString(state)}`,
    // CRI would open a streaming TCP port and want CNI; opt would touch
    // /opt/containerd; the other snapshotters just fail to load here.
    "disabled_plugins = [",
    ...(o.cri ? [] : ['  "io.containerd.grpc.v1.cri",']),
    '  "io.containerd.internal.v1.opt",',
    '  "io.containerd.tracing.processor.v1.otlp",',
    '  "io.containerd.internal.v1.tracing",',
    '  "io.containerd.snapshotter.v1.btrfs",',
    '  "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.snapshotter.v1.devmapper",',
    '  "io.containerd.snapshotter.v1.aufs",',
    "]",
    "",
    "[grpc]",
    `  address = ${tomlString(socket)}`,
    "",
    "[ttrpc]",
    `  address = ${tomlString(socket + ".ttrpc")}`,
    "",
    "[debug]",
    '  address = ""',
    `  level = ${tomlString(o.logLevel ?? "info")}`,
    "",
    "[metrics]",
    '  address = ""',
    "",
    ...(o.cri
      ? [
          '[plugins."io.containerd.grpc.v1.cri"]',
          '  stream_server_address = "127.0.0.1"',
          '  stream_server_port = "0"',
          '  [plugins."io.containerd.grpc.v1.cri".cni]',
          `    bin_dir = ${tomlString(join(base, "cni-bin"))}`,
          `    conf_dir = ${tomlString(join(base, "cni-conf"))}`,
          ...(o.cri.configPath !== undefined ? ['  [plugins."io.containerd.grpc.v1.cri".registry]', `    config_path = ${tomlString(o.cri.configPath)}`] : []),
          "",
        ]
      : []),
  ].join("\n");
  const configFile = join(base, "config.toml");
  if (!o.keepConfig || !existsSync(configFile)) writeFileSync(configFile, config);

  const child = spawn("containerd", ["--config", configFile], {
    env: commandEnv({ HTTP_PROXY: undefined, HTTPS_PROXY: undefined, http_proxy: undefined, https_proxy: undefined }),
    stdio: ["ignore", "pipe", "pipe"],
    cwd: base,
  });
  trackChild(child);
  let err = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => (err += s));
  child.stderr!.on("data", (s: string) => {
    err += s;
    if (o.echo) process.stderr.write(s);
  });
  const watch = watchExit(child);

  let stopped = false;
  const stop = async (graceMs = 5_000) => {
    if (!stopped) {
      stopped = true;
      await watch.terminate(graceMs);
    }
    await unmountUnder(base);
  };

  const ctrBase = ["-a", socket, "-n", CONTAINERD_NAMESPACE];
  const ctr = (args: readonly string[], opts: { env?: Record<string, string | undefined>; timeoutMs?: number } = {}) =>
    runCommand("ctr", [...ctrBase, ...args], { timeoutMs: opts.timeoutMs ?? 60_000, env: opts.env });

  const readyTimeout = o.readyTimeoutMs ?? 20_000;
  const deadline = Date.now() + readyTimeout;
  let last: CommandResult | undefined;
  for (let i = 0; i < 200 && Date.now() < deadline; i++) {
    if (!watch.running) break;
    if (existsSync(socket)) {
      last = await ctr(["version"], { timeoutMs: 5_000 });
      if (last.code === 0 && /Server:[\s\S]*Version:/.test(last.stdout)) break;
    }
    await sleep(100);
  }
  if (!watch.running || !last || last.code !== 0) {
    await stop(0);
    throw new Error(
      `containerd (${configFile}) not ready within ${readyTimeout}ms (${watch.running ? "running" : watch.info})\n` +
        `--- ctr version ---\n${last ? last.stderr + last.stdout : "(socket never appeared)"}\n--- containerd log ---\n${tail(err)}`,
    );
  }

  const check = async (ref?: string, snapshotter?: string) => {
    const r = await ctr(["images", "check", ...(snapshotter ? ["--snapshotter", snapshotter] : [])], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`ctr images check exited ${r.code}: ${r.stderr}`);
    return r.stdout
      .split("\n")
      .slice(1)
      .map((l) => l.trim())
      .filter((l) => l && (!ref || l.split(/\s+/)[0] === ref));
  };

  const cd: Containerd = {
    dir: base,
    socket,
    configFile,
    namespace: CONTAINERD_NAMESPACE,
    pid: child.pid ?? -1,
    get running() {
      return watch.running;
    },
    stderr: () => err,
    ctr,
    async pull(ref, p) {
      const args = ["images", "pull", "--hosts-dir", resolve(p.hostsDir)];
      if (p.plainHttp) args.push("--plain-http");
      if (p.user) args.push("--user", typeof p.user === "string" ? p.user : `${p.user.user}:${p.user.password}`);
      if (p.snapshotter) args.push("--snapshotter", p.snapshotter);
      if (p.platform) args.push("--platform", p.platform);
      if (p.args) args.push(...p.args);
      args.push(ref);
      const r = await ctr(args, { env: p.env, timeoutMs: p.timeoutMs ?? 300_000 });
      const shown = args.map((a, i) => (args[i - 1] === "--user" ? "<user>" : a));
      let line = "";
      if (r.code === 0) line = (await check(ref, p.snapshotter))[0] ?? "";
      // REF TYPE DIGEST STATUS SIZE UNPACKED, e.g.
      // 127.0.0.1:PORT/test/app:v1 application/vnd.oci.image.manifest.v1+json sha256:... complete (3/3) 11.0 MiB/11.0 MiB true
      const unpacked = / complete \(\d+\/\d+\) /.test(` ${line} `) && /\strue$/.test(line);
      return { ...r, argv: ["ctr", ...ctrBase, ...shown], unpacked, check: line };
    },
    check,
    async removeImage(ref) {
      const r = await ctr(["images", "rm", "--sync", ref], { timeoutMs: 60_000 });
      if (r.code !== 0 && !/not found/i.test(r.stderr)) throw new Error(`ctr images rm ${ref} exited ${r.code}: ${r.stderr}`);
    },
    stop,
  };
  o.t?.after(() => cd.stop());
  return cd;
}

export interface MirrorHost {
  // "http://127.0.0.1:PORT" (a path prefix is allowed; see overridePath).
  url: string;
  // Default ["pull", "resolve"].
  capabilities?: ("pull" | "resolve" | "push")[];
  // Extra request headers: [host."<url>".header].
  headers?: Record<string, string | string[]>;
  skipVerify?: boolean;
  // CA file(s) for an https mirror.
  ca?: string | string[];
  // The url's path is the full API root (no "/v2" appended).
  overridePath?: boolean;
}

export interface HostsTomlOptions {
  // The upstream itself (`server = ...`), e.g. "http://127.0.0.1:PORT".
  // Default: https://<registryHost> (containerd's own default).
  server?: string;
  // Tried in order before the server.
  mirrors?: MirrorHost[];
  // For an https server: CA file / skip verification.
  serverCa?: string;
  serverSkipVerify?: boolean;
}

// Writes <hostsDir>/<registryHost>/hosts.toml, registryHost as in image
// references ("127.0.0.1:5000", "10.213.1.2:5000"); returns its path.
export function writeHostsToml(hostsDir: string, registryHost: string, o: HostsTomlOptions = {}): string {
  const lines: string[] = [`server = ${tomlString(o.server ?? `https://${registryHost}`)}`];
  if (o.serverCa) lines.push(`ca = ${tomlString(o.serverCa)}`);
  if (o.serverSkipVerify) lines.push("skip_verify = true");
  for (const m of o.mirrors ?? []) {
    lines.push("", `[host.${tomlString(m.url)}]`);
    lines.push(`  capabilities = [${(m.capabilities ?? ["pull", "resolve"]).map(tomlString).join(", ")}]`);
    if (m.skipVerify) lines.push("  skip_verify = true");
    if (m.ca) lines.push(`  ca = [${(Array.isArray(m.ca) ? m.ca : [m.ca]).map(tomlString).join(", ")}]`);
    if (m.overridePath) lines.push("  override_path = true");
    if (m.headers && Object.keys(m.headers).length) {
      lines.push(`  [host.${tomlString(m.url)}.header]`);
      for (const [k, v] of Object.entries(m.headers)) lines.push(`    ${tomlString(k)} = [${(Array.isArray(v) ? v : [v]).map(tomlString).join(", ")}]`);
    }
  }
  // containerd 1.6 rejects a hosts.toml without a host tree ("failed to
  // decode hosts.toml: invalid `host` tree", containerd#10027) and then
  // silently uses its defaults (https, plus http only for localhost): an
  // empty [host] table works around it.
  if (!o.mirrors?.length) lines.push("", "[host]");
  // containerd looks the directory up as given, ":" included.
  const d = join(resolve(hostsDir), registryHost);
  mkdirSync(d, { recursive: true });
  const file = join(d, "hosts.toml");
  writeFileSync(file, lines.join("\n") + "\n");
  return file;
}
