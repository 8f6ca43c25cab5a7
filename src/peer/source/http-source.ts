import { Agent, buildConnector, request, type Dispatcher } from "undici";
import { DamselflyError } from "../../common/errors.js";
import { STATUS_CODES } from "node:http";
import tls from "node:tls";
import { version } from "../../common/version.js";
import { EgressPolicy } from "../../common/egress.js";
import { urlForMessages } from "../../common/url-redact.js";
import type { Source } from "./source.js";

export interface SourceRange {
  start: number;
  // Inclusive; undefined means "to the end".
  end?: number;
}

export interface SourceResponse {
  status: number;
  // -1 when the origin did not say (chunked or compressed).
  contentLength: number;
  // Total object size from Content-Range on a 206, else contentLength.
  totalLength: number;
  // True when the body starts at the requested range start.
  ranged: boolean;
  body: AsyncIterable<Uint8Array> & { destroy(err?: Error): unknown };
}

export interface SourceOptions {
  timeoutMs: number;
  bodyTimeoutMs?: number;
  // Extra trusted CA certificates (PEM), added to the system roots.
  extraCaPem?: string | undefined;
  // Where origin fetches may connect (default: the built-in denials only).
  egress?: EgressPolicy;
}

const MAX_REDIRECTS = 5;
export const USER_AGENT = `damselfly/${version()}`;
// Headers that must not follow a redirect to another origin (blob storage
// redirects are common and must not receive registry credentials).
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];

// The origin backend for http(s) URLs. Other schemes implement the
// same fetch contract later.
export class HttpSource implements Source {
  // Shared with the proxy's pass-through requests and registry access checks
  // (same timeouts, same trust, same egress policy).
  readonly dispatcher: Dispatcher;
  readonly egress: EgressPolicy;

  constructor(readonly options: SourceOptions) {
    const egress = (this.egress = options.egress ?? new EgressPolicy());
    this.dispatcher = sourceAgent(options, (base) => egress.wrap(base), egress.lookup);
  }

  async fetch(rawUrl: string, headers: Record<string, string>, range: SourceRange | undefined, signal?: AbortSignal): Promise<SourceResponse> {
    let url = new URL(rawUrl);
    // Shared fetches identify the daemon, not whichever client came first.
    let hdrs: Record<string, string> = { "user-agent": USER_AGENT, ...headers };
    // Compression would make lengths and offsets meaningless.
    hdrs["accept-encoding"] = "identity";
    if (range) hdrs["range"] = `bytes=${range.start}-${range.end ?? ""}`;
    for (let hop = 0; ; hop++) {
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, { method: "GET", headers: hdrs, dispatcher: this.dispatcher, signal: signal ?? null });
      } catch (err) {
        if (signal?.aborted) throw DamselflyError.from(signal.reason ?? err);
        const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
        if (e.code === "DF_ERR_EGRESS_DENIED") throw e;
        throw new DamselflyError(
          e.code === "DF_ERR_TIMEOUT" ? "DF_ERR_TIMEOUT" : "DF_ERR_SOURCE_UNREACHABLE",
          `origin unreachable for ${redact(url)}: ${describe(err)}`,
          { cause: err, temporary: true },
        );
      }
      const status = res.statusCode;
      if (status >= 300 && status < 400 && typeof res.headers["location"] === "string") {
        res.body.resume();
        if (hop >= MAX_REDIRECTS) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `too many redirects fetching ${redact(url)}`);
        const next = new URL(res.headers["location"], url);
        if (next.protocol !== "http:" && next.protocol !== "https:")
          throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `origin redirected ${redact(url)} to a ${next.protocol} URL`);
        if (next.origin !== url.origin) {
          hdrs = Object.fromEntries(Object.entries(hdrs).filter(([k]) => !CREDENTIAL_HEADERS.includes(k.toLowerCase())));
        }
        url = next;
        continue;
      }
      if (status >= 400) {
        res.body.resume();
        throw new DamselflyError(
          "DF_ERR_SOURCE_STATUS",
          `origin returned HTTP ${status} ${STATUS_CODES[status] ?? ""}`.trimEnd() + ` for ${redact(new URL(rawUrl))}`,
          {
            sourceStatus: status,
            temporary: status >= 500 || status === 429,
          },
        );
      }
      if (status !== 200 && status !== 206) {
        res.body.resume();
        throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `origin returned unexpected HTTP ${status} for ${redact(new URL(rawUrl))}`, {
          sourceStatus: status,
        });
      }
      const encoded = res.headers["content-encoding"] && res.headers["content-encoding"] !== "identity";
      const cl = res.headers["content-length"];
      const contentLength = !encoded && typeof cl === "string" && /^\d+$/.test(cl) ? Number(cl) : -1;
      let totalLength = contentLength;
      let ranged = false;
      if (status === 206) {
        const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers["content-range"] ?? ""));
        if (!cr || !range || Number(cr[1]) !== range.start) {
          res.body.destroy();
          throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `origin sent a Content-Range that does not match the request for ${redact(new URL(rawUrl))}`);
        }
        ranged = true;
        totalLength = cr[3] === "*" ? -1 : Number(cr[3]);
      }
      return { status, contentLength, totalLength, ranged, body: res.body };
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

type Connector = (o: buildConnector.Options, cb: buildConnector.Callback) => void;

// An agent with the source's timeouts and trust whose connections `wrap`
// decides on (an egress policy): the origin fetches' and the proxy's.
export function sourceAgent(opts: SourceOptions, wrap: (base: Connector) => Connector, lookup?: EgressPolicy["lookup"]): Agent {
  const base = buildConnector({
    ...(opts.extraCaPem ? { ca: [...tls.rootCertificates, opts.extraCaPem] } : {}),
    timeout: opts.timeoutMs,
    ...(lookup ? { lookup: lookup as never } : {}),
  });
  return new Agent({
    connect: wrap(base),
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.bodyTimeoutMs ?? Math.max(opts.timeoutMs, 60_000),
    connections: 16,
  });
}

// URLs in messages lose their query string: it may hold signatures.
export const redact = urlForMessages;

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.code ?? e.cause?.message ?? e.message ?? String(err);
}
