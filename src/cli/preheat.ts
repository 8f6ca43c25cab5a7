import type { Writable } from "node:stream";
import { request } from "undici";
import { DamselflyError, type ErrorCode } from "../common/errors.js";
import { parseHeaders } from "../common/http-headers.js";
import { hfToken, isHfUrl } from "../common/hf/hf-resolve.js";
import { isS3Url } from "../common/s3/s3-config.js";
import type { PreheatConfig } from "../common/schemas.js";
import { imageManifestUrl } from "../common/image-ref.js";

// Moved to common/ (the manager resolves pod images too); kept here for callers.
export { imageManifestUrl };

export interface PreheatIo {
  stdout: Writable;
  stderr: Writable;
}

const POLL_MS = 1000;

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
  const object = isS3Url(target) || isHfUrl(target);
  const isUrl = object || /^https?:\/\//.test(target);
  const type = config.type || (!isUrl || isManifestUrl(target) ? "image" : "file");
  if (object && type !== "file") throw new DamselflyError("DF_ERR_USAGE", `${target.slice(0, 5)} URLs are preheated as --type file`);
  if (!object && (config.recursive || config.include.length || config.exclude.length || config.hfRevision)) {
    throw new DamselflyError("DF_ERR_USAGE", "-r, --include, --exclude and --hf-revision apply to s3:// and hf:// URLs");
  }
  if (!config.recursive && (config.include.length || config.exclude.length)) throw new DamselflyError("DF_ERR_USAGE", "--include and --exclude need -r");
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
    args: { type, url, scope: config.scope, headers, ...(type === "image" ? { platform: config.platform } : {}), ...objectArgs(target, config) },
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
  if (state === "FAILURE") {
    const why = results?.error || String(last.error ?? "");
    throw new DamselflyError(failureCode(why, results?.results ?? []), `job ${id} failed: ${why}`);
  }
  io.stdout.write(`job ${id}: SUCCESS\n`);
}

// The job fields of an s3:// or hf:// URL. The hub token (HF_TOKEN) is sent
// with the job, which holds it in memory only: never on the command line.
function objectArgs(target: string, config: PreheatConfig): Record<string, unknown> {
  if (!isS3Url(target) && !isHfUrl(target)) return {};
  const token = isHfUrl(target) ? hfToken() : "";
  return {
    ...(config.recursive ? { recursive: true } : {}),
    ...(config.include.length ? { include: config.include } : {}),
    ...(config.exclude.length ? { exclude: config.exclude } : {}),
    ...(config.hfRevision ? { hf_revision: config.hfRevision } : {}),
    ...(token ? { hf_token: token } : {}),
  };
}

// The exit code of a failed job: the code the job failed with ("DF_ERR_X:
// why", from resolving its URL), or the one every failed task shares (a
// source refusing the seed peer); else DF_ERR_JOB_FAILED.
export function failureCode(error: string, results: { failure_tasks?: { description: string }[] }[]): ErrorCode {
  const codeOf = (s: string) => {
    const c = /^(DF_ERR_[A-Z0-9_]+):/.exec(s)?.[1];
    return c !== undefined && DamselflyError.isCode(c) ? (c as ErrorCode) : undefined;
  };
  const own = codeOf(error);
  if (own) return own;
  const codes = new Set(results.flatMap((r) => r.failure_tasks ?? []).map((f) => codeOf(f.description)));
  const [only] = codes;
  return codes.size === 1 && only !== undefined ? only : "DF_ERR_JOB_FAILED";
}
