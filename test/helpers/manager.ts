// A real `damselfly manager` process on 127.0.0.1 and a small JSON client for
// its API.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request, type Dispatcher } from "undici";
import { spawnDamselfly, type Cleanup, type DamselflyProc } from "./procs.js";

export const ADMIN_PASSWORD = "test-admin-password-1";

export interface ManagerHandle {
  proc: DamselflyProc;
  url: string;
  dataDir: string;
  database: string;
  api<T = any>(
    method: string,
    path: string,
    opts?: { token?: string; body?: unknown; headers?: Record<string, string>; dispatcher?: Dispatcher },
  ): Promise<{ status: number; body: T; headers: Record<string, string | string[] | undefined> }>;
  signin(name?: string, password?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface ManagerOptions {
  t?: Cleanup;
  // Default: sqlite in a new temp dir.
  database?: string;
  dataDir?: string;
  args?: readonly string[];
  env?: Record<string, string | undefined>;
  adminPassword?: string | null;
  // Default 127.0.0.1:0.
  listen?: string;
  // With --tls-* in args: the CA file the API client trusts (the URL is
  // then https://).
  tlsCa?: string;
}

export async function startManager(opts: ManagerOptions = {}): Promise<ManagerHandle> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "damselfly-manager-"));
  const database = opts.database ?? `sqlite:${join(dataDir, "manager.db")}`;
  const env: Record<string, string | undefined> = { ...opts.env };
  if (opts.adminPassword !== null) env.DAMSELFLY_ADMIN_PASSWORD = opts.adminPassword ?? ADMIN_PASSWORD;
  const proc = spawnDamselfly(["manager", "--listen", opts.listen ?? "127.0.0.1:0", "--data-dir", dataDir, "--database", database, ...(opts.args ?? [])], {
    name: "manager",
    env,
  });
  const dispatcher = opts.tlsCa ? new Agent({ connect: { ca: readFileSync(opts.tlsCa) } }) : undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await proc.stop("SIGTERM", 5_000);
    await dispatcher?.close();
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
  };
  opts.t?.after(stop);
  const ready = await proc.waitForLog("manager ready", 20_000);
  const url = String(ready.url ?? `http://${String(ready.listen)}`);
  const api: ManagerHandle["api"] = async (method, path, o = {}) => {
    const res = await request(url + path, {
      method: method as "GET",
      ...(o.dispatcher ? { dispatcher: o.dispatcher } : dispatcher ? { dispatcher } : {}),
      headers: {
        ...(o.token ? { authorization: `Bearer ${o.token}` } : {}),
        ...(o.body !== undefined ? { "content-type": "application/json" } : {}),
        ...o.headers,
      },
      ...(o.body !== undefined ? { body: typeof o.body === "string" ? o.body : JSON.stringify(o.body) } : {}),
    });
    const text = await res.body.text();
    let body: any = text;
    try {
      body = text === "" ? undefined : JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.statusCode, body, headers: res.headers };
  };
  const signin = async (name = "root", password = opts.adminPassword ?? ADMIN_PASSWORD) => {
    const r = await api("POST", "/api/v1/users/signin", { body: { name, password } });
    if (r.status !== 200) throw new Error(`sign-in as ${name} failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.token as string;
  };
  return { proc, url, dataDir, database, api, signin, stop };
}

// Polls a job until it ends.
export async function waitForJob(m: ManagerHandle, token: string, id: number, timeoutMs = 60_000, prefix = "/oapi/v1"): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await m.api("GET", `${prefix}/jobs/${id}`, { token });
    if (r.status !== 200) throw new Error(`job ${id}: ${r.status} ${JSON.stringify(r.body)}`);
    if (r.body.state === "SUCCESS" || r.body.state === "FAILURE") return r.body;
    if (Date.now() > deadline) throw new Error(`job ${id} still ${r.body.state} after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

// Waits (bounded: 10 s) until a scheduler registered with the manager, so
// jobs and the extender have someone to ask.
export async function waitForSchedulers(m: ManagerHandle, token: string): Promise<void> {
  for (let i = 0; i < 100 && (await m.api("GET", "/api/v1/schedulers", { token })).body.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
}

// The extender's scores for args once `host` is scored `score`: the first
// calls may come before the manager resolved the pod's image and asked the
// schedulers, so this polls (bounded, 150 calls) and returns the last answer.
export async function prioritizeUntil(m: ManagerHandle, args: unknown, host: string, score: number): Promise<{ Host: string; Score: number }[]> {
  let scores: { Host: string; Score: number }[] = [];
  for (let i = 0; i < 150; i++) {
    const r = await m.api("POST", "/extender/v1/prioritize", { body: args });
    if (r.status !== 200) throw new Error(`prioritize: ${r.status} ${JSON.stringify(r.body)}`);
    scores = r.body;
    if (scores.some((s) => s.Host === host && s.Score === score)) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  return scores;
}

// A process's resident memory now (Linux), in bytes.
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

// Requests from another loopback address (127.0.0.2 ...), as a second
// client machine would send them.
export function fromAddress(localAddress: string): Agent {
  return new Agent({ localAddress });
}
