// The daemon's s3:// and hf:// defaults (its source.s3 and source.hf keys)
// for a `get` that names no endpoint of its own: the client lists and signs
// against the same store or hub the daemon would, so one daemon setting
// points every client of a node at a mirror. Asked only when needed; any
// failure means "no defaults" (the download itself then reports an
// unreachable daemon with its usual message).
import { findCredentials, isS3Url } from "../common/s3/s3-config.js";
import { isHfUrl } from "../common/hf/hf-resolve.js";
import type { GetConfig } from "../common/schemas.js";
import { daemonTarget, type DaemonTarget } from "./daemon-target.js";

export interface SourceDefaults {
  s3Endpoint: string;
  s3Region: string;
  s3PathStyle: boolean;
  hfEndpoint: string;
}

const PATH = "/damselfly.daemon.v1.DaemonService/SourceDefaults";
const TIMEOUT_MS = 5_000;
// The answer is four short strings: anything larger is not our daemon.
const MAX_ANSWER = 8 * 1024;

// Which defaults this get would take from its daemon (none when the caller
// names its own endpoint, flag or environment).
function wanted(rawUrl: string, config: GetConfig, env: NodeJS.ProcessEnv): "s3" | "hf" | undefined {
  if (isS3Url(rawUrl)) {
    // A caller without credentials hands the URL to the daemon, which signs
    // it with its own defaults anyway (peer/source/s3-origin.ts).
    const named = config.s3Endpoint !== "" || !!env["AWS_ENDPOINT_URL_S3"] || !!env["AWS_ENDPOINT_URL"];
    return !named && findCredentials(env) ? "s3" : undefined;
  }
  if (isHfUrl(rawUrl)) return config.hfEndpoint === "" && !env["HF_ENDPOINT"] ? "hf" : undefined;
  return undefined;
}

export async function withSourceDefaults(rawUrl: string, config: GetConfig, env: NodeJS.ProcessEnv = process.env): Promise<GetConfig> {
  const kind = wanted(rawUrl, config, env);
  if (!kind) return config;
  let target: DaemonTarget;
  try {
    target = await daemonTarget(config.daemon, config);
  } catch {
    return config; // validateGet reports a bad --daemon
  }
  const d = await askDaemon(target);
  if (!d) return config;
  if (kind === "hf") return d.hfEndpoint ? { ...config, hfEndpoint: d.hfEndpoint } : config;
  if (!d.s3Endpoint) return config;
  return { ...config, s3Endpoint: d.s3Endpoint, s3Region: config.s3Region || d.s3Region, s3PathStyle: config.s3PathStyle || d.s3PathStyle };
}

// One Connect unary call (JSON) on the get client's own HTTP/2 session, as
// DownloadTask is (daemon-client.ts): no RPC runtime loaded.
export function askDaemon(target: DaemonTarget): Promise<SourceDefaults | undefined> {
  return new Promise((resolve) => {
    let session: ReturnType<DaemonTarget["connect"]>;
    try {
      session = target.connect();
    } catch {
      resolve(undefined);
      return;
    }
    const done = (v: SourceDefaults | undefined) => {
      clearTimeout(timer);
      session.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), TIMEOUT_MS);
    session.on("error", () => done(undefined));
    const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/json", "connect-protocol-version": "1" });
    let status = 0;
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_ANSWER) done(undefined);
      else chunks.push(c);
    });
    stream.on("error", () => done(undefined));
    stream.on("end", () => done(status === 200 ? parse(Buffer.concat(chunks).toString("utf8")) : undefined));
    stream.end("{}");
  });
}

function parse(text: string): SourceDefaults | undefined {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const str = (v: unknown) => (typeof v === "string" && v.length <= 2048 ? v : "");
  return { s3Endpoint: str(j.s3Endpoint), s3Region: str(j.s3Region), s3PathStyle: j.s3PathStyle === true, hfEndpoint: str(j.hfEndpoint) };
}
