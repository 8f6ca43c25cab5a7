import type { Writable } from "node:stream";
import { request } from "undici";
import { DamselflyError, type ErrorCode } from "../common/errors.js";
import { parseHeaders } from "../common/http-headers.js";
import type { PreheatConfig } from "../common/schemas.js";

export interface PreheatIo {
  stdout: Writable;
  stderr: Writable;
}

const POLL_MS = 1000;

// "registry.example.com:5000/team/app:1.2" -> its manifest URL. Names without
// a registry are Docker Hub's (library/ for one-word names); loopback
// registries are reached over plain http.
export function imageManifestUrl(ref: string): string {
  const m = /^(?:([^/]+)\/)?([a-z0-9]+(?:[._/-][a-z0-9]+)*?)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$/.exec(ref);
  if (!m) throw new DamselflyError("DF_ERR_USAGE", `not an image reference: ${JSON.stringify(ref)} (expected [registry/]repository[:tag|@digest])`);
  let [, first, repo] = m as unknown as [string, string | undefined, string];
  const tag = m[3];
  const digest = m[4];
  let registry: string;
  if (first !== undefined && (first.includes(".") || first.includes(":") || first === "localhost")) registry = first;
  else {
    registry = "registry-1.docker.io";
    if (first !== undefined) repo = `${first}/${repo}`;
    else repo = `library/${repo}`;
  }
  if (registry === "docker.io" || registry === "index.docker.io") registry = "registry-1.docker.io";
  const host = registry.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  const plain = host === "localhost" || host === "::1" || /^127\./.test(host);
  return `${plain ? "http" : "https"}://${registry}/v2/${repo}/manifests/${digest ?? tag ?? "latest"}`;
}

function isManifestUrl(s: string): boolean {
  return /^https?:\/\/[^/]+\/v2\/.+\/manifests\/[^/]+$/.test(s);
}

async function call(method: string, url: string, token: string, body?: unknown): Promise<Record<string, unknown>> {
  let res;
  try {
    res = await request(url, {
      method: method as "GET" | "POST",
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    throw new DamselflyError("DF_ERR_MANAGER_UNAVAILABLE", `manager ${new URL(url).origin} unreachable: ${(err as Error).message}`, { cause: err });
  }
  const text = await res.body.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Shown below with the status.
  }
  if (res.statusCode >= 400) {
    const code = typeof json.code === "string" && DamselflyError.isCode(json.code) ? (json.code as ErrorCode) : "DF_ERR_INTERNAL";
    throw new DamselflyError(code, `manager answered ${res.statusCode}: ${typeof json.message === "string" ? json.message : text.slice(0, 200)}`);
  }
  return json;
}

export async function runPreheat(target: string, config: PreheatConfig, io: PreheatIo): Promise<void> {
  if (config.token === "") throw new DamselflyError("DF_ERR_USAGE", "a personal access token with the job scope is needed: DAMSELFLY_PREHEAT_TOKEN or --token");
  const isUrl = /^https?:\/\//.test(target);
  const type = config.type || (!isUrl || isManifestUrl(target) ? "image" : "file");
  const url = type === "image" && !isUrl ? imageManifestUrl(target) : target;
  const headers = parseHeaders(config.header);
  const clusterIds = config.clusterId.map((x) => {
    const n = Number(x);
    if (!Number.isSafeInteger(n) || n < 1) throw new DamselflyError("DF_ERR_USAGE", `--cluster-id ${JSON.stringify(x)}: expected a positive integer`);
    return n;
  });
  const base = config.manager.replace(/\/+$/, "");
  const job = await call("POST", `${base}/oapi/v1/jobs`, config.token, {
    type: "preheat",
    args: { type, url, scope: config.scope, headers, ...(type === "image" ? { platform: config.platform } : {}) },
    ...(clusterIds.length ? { scheduler_cluster_ids: clusterIds } : {}),
  });
  const id = job.id as number;
  io.stderr.write(`damselfly preheat: job ${id} created (${type} ${url.replace(/\?.*$/, "")}, ${config.scope})\n`);
  if (!config.wait) {
    io.stdout.write(`${id}\n`);
    return;
  }
  const deadline = config.timeout > 0 ? Date.now() + config.timeout : Number.POSITIVE_INFINITY;
  let state = String(job.state);
  let last = job;
  while (state !== "SUCCESS" && state !== "FAILURE") {
    if (Date.now() > deadline) throw new DamselflyError("DF_ERR_TIMEOUT", `job ${id} still ${state} after the timeout`);
    await new Promise((r) => setTimeout(r, POLL_MS));
    last = await call("GET", `${base}/oapi/v1/jobs/${id}`, config.token);
    state = String(last.state);
  }
  const results = ((
    last.result as {
      job_states?: {
        error: string;
        results: { scheduler_cluster_id: number; success_tasks: unknown[]; failure_tasks: { url: string; hostname: string; description: string }[] }[];
      }[];
    }
  ).job_states ?? [])[0];
  for (const r of results?.results ?? []) {
    io.stdout.write(`cluster ${r.scheduler_cluster_id}: ${r.success_tasks.length} task(s) preheated, ${r.failure_tasks.length} failed\n`);
    for (const f of r.failure_tasks) io.stdout.write(`  failed: ${f.url.replace(/\?.*$/, "")} on ${f.hostname || "-"}: ${f.description}\n`);
  }
  if (state === "FAILURE") throw new DamselflyError("DF_ERR_JOB_FAILED", `job ${id} failed: ${results?.error || String(last.error ?? "")}`);
  io.stdout.write(`job ${id}: SUCCESS\n`);
}
