// What the local Docker Engine accepts in daemon.json, asked of its own
// dockerd binary: `init docker` must never leave a file the engine refuses
// to start with (Docker 20.10, Debian 12's docker.io, rejects "proxies").
import { randomBytes } from "node:crypto";
import { unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DamselflyError } from "../../common/errors.js";
import { runTool } from "./run-tool.js";

export interface DockerdVersion {
  major: number;
  minor: number;
  // As dockerd printed it, e.g. "20.10.24+dfsg1".
  text: string;
}

// "proxies" in daemon.json and `dockerd --validate` came with Engine 23.0.
const PROXIES_SINCE = 23;
const RUN_TIMEOUT_MS = 15_000;

const run = (bin: string, args: string[]) => runTool(bin, args, { timeoutMs: RUN_TIMEOUT_MS });

// `dockerd --version`; undefined when there is no dockerd (or it says
// something else).
export async function dockerdVersion(bin: string): Promise<DockerdVersion | undefined> {
  const r = await run(bin, ["--version"]);
  const m = /version v?((\d+)\.(\d+)[^\s,]*)/i.exec(r.stdout);
  return r.code === 0 && m ? { major: Number(m[2]), minor: Number(m[3]), text: m[1]! } : undefined;
}

export function supportsProxies(v: DockerdVersion): boolean {
  return v.major >= PROXIES_SINCE;
}

// Has dockerd read `content` as its configuration file, before it replaces
// the real one. 23.0 and later: `dockerd --validate`. Older engines have no
// such flag, but they check the file's keys before anything else and stop at
// a key also given as a flag: the copy checked sets "pidfile", and the flag
// --pidfile too, so an engine that knows every key stops there, having done
// nothing. (Older engines check value types only when they start.)
export async function validateDaemonJson(bin: string, version: DockerdVersion, content: string): Promise<void> {
  const file = join(tmpdir(), `damselfly-daemon-json-${randomBytes(4).toString("hex")}.json`);
  const probe = "/nonexistent/damselfly-validate.pid";
  const modern = version.major >= PROXIES_SINCE;
  const doc = JSON.parse(content) as Record<string, unknown>;
  await writeFile(file, modern ? content : JSON.stringify({ ...doc, pidfile: `${probe}.file` }), { mode: 0o600 });
  try {
    const r = await run(bin, modern ? ["--validate", "--config-file", file] : ["--config-file", file, "--pidfile", probe]);
    const said = `${r.stderr}${r.stdout}`.trim().replaceAll(file, "daemon.json");
    const ok = modern
      ? r.code === 0
      : /specified both as a flag and in the configuration file: pidfile/.test(said) && !/don't match any configuration option/.test(said);
    if (!ok)
      throw new DamselflyError(
        "DF_ERR_CONFIG",
        `dockerd ${version.text} (${bin}) would not start with the new daemon.json: ${said.split("\n")[0] || `exit ${r.code}`}; the file was not changed`,
      );
  } finally {
    await unlink(file).catch(() => undefined);
  }
}

// The engine's HTTP(S) proxy for engines before 23.0 (and wherever dockerd's
// version is unknown): environment in a systemd drop-in, which every version
// reads.
export function proxyDropIn(proxyUrl: string, noProxy: string): string {
  const env = [`HTTP_PROXY=${proxyUrl}`, `HTTPS_PROXY=${proxyUrl}`, `NO_PROXY=${noProxy}`].map((v) => `"${v}"`).join(" ");
  return `# Written by damselfly init docker: the Docker Engine's HTTP(S) proxy (before Engine 23.0,\n# daemon.json has no "proxies").\n[Service]\nEnvironment=${env}\n`;
}

export const DEFAULT_DROP_IN = "/etc/systemd/system/docker.service.d/damselfly-proxy.conf";
