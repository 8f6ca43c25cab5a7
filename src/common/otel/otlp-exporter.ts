// Batches finished spans and POSTs them to an OTLP/HTTP receiver
// (/v1/traces), as protobuf (the spec's default) or JSON. Spans wait in a
// bounded queue: when the receiver is slow or gone, new spans are dropped and
// counted; nothing the traced code does ever waits for it.
import http from "node:http";
import https from "node:https";
import { gzipSync } from "node:zlib";
import type { AttrValue, TracingLog } from "../trace.js";
import { version } from "../version.js";
import { encodeTraceRequestJson, encodeTraceRequestProto } from "./otlp-encode.js";
import type { FinishedSpan } from "./tracer-impl.js";

export interface ExporterOptions {
  url: string;
  protocol: "http/protobuf" | "http/json";
  headers: Record<string, string>;
  gzip: boolean;
  timeoutMs: number;
  scheduleDelayMs: number;
  maxQueue: number;
  maxBatch: number;
}

const num = (v: string | undefined, dflt: number) => {
  const n = v === undefined || v.trim() === "" ? NaN : Number(v);
  return Number.isFinite(n) && n > 0 ? n : dflt;
};

// OTEL_EXPORTER_OTLP_HEADERS: key=value pairs, comma-separated, values
// percent-encoded. Never logged: they usually hold an API key.
function parseHeaders(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (raw ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i <= 0) continue;
    try {
      out[decodeURIComponent(pair.slice(0, i).trim()).toLowerCase()] = decodeURIComponent(pair.slice(i + 1).trim());
    } catch {
      // Skipped, as the spec asks for malformed pairs.
    }
  }
  return out;
}

export function exporterOptionsFromEnv(env: NodeJS.ProcessEnv, log?: TracingLog): ExporterOptions {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || "http://localhost:4318";
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || `${base.replace(/\/+$/, "")}/v1/traces`;
  const proto = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "").trim().toLowerCase() || "http/protobuf";
  let protocol: ExporterOptions["protocol"] = "http/protobuf";
  if (proto === "http/json") protocol = "http/json";
  else if (proto !== "http/protobuf") log?.warn({ protocol: proto }, "tracing: only OTLP over HTTP is supported (http/protobuf, http/json); using http/protobuf");
  const compression = (env.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION ?? env.OTEL_EXPORTER_OTLP_COMPRESSION ?? "").trim().toLowerCase();
  return {
    url,
    protocol,
    headers: { ...parseHeaders(env.OTEL_EXPORTER_OTLP_HEADERS), ...parseHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) },
    gzip: compression === "gzip",
    timeoutMs: num(env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT ?? env.OTEL_EXPORTER_OTLP_TIMEOUT, 10_000),
    scheduleDelayMs: num(env.OTEL_BSP_SCHEDULE_DELAY, 5_000),
    maxQueue: num(env.OTEL_BSP_MAX_QUEUE_SIZE, 2048),
    maxBatch: num(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512),
  };
}

// A failing receiver is reported at most this often.
const WARN_EVERY_MS = 60_000;

export class OtlpExporter {
  private queue: FinishedSpan[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private dropped = 0;
  private lastWarn = 0;
  private closed = false;
  private readonly inflight = new Set<http.ClientRequest>();
  private readonly url: URL;
  private readonly agent: http.Agent;

  constructor(private readonly o: ExporterOptions & { resource: Record<string, AttrValue>; log?: TracingLog }) {
    this.url = new URL(o.url);
    this.agent = this.url.protocol === "https:" ? new https.Agent({ keepAlive: true, maxSockets: 1 }) : new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  add(span: FinishedSpan): void {
    if (this.closed) return;
    if (this.queue.length >= this.o.maxQueue) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.o.maxBatch) this.kick();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.kick(), this.o.scheduleDelayMs);
      this.timer.unref();
    }
  }

  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.sending || this.queue.length === 0) return;
    this.sending = this.drain().finally(() => {
      this.sending = undefined;
      if (this.queue.length > 0 && !this.closed) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.o.maxBatch);
      await this.post(batch);
    }
  }

  private post(batch: FinishedSpan[]): Promise<void> {
    const scope = { name: "damselfly", version: version() };
    let body: Buffer = this.o.protocol === "http/json" ? Buffer.from(JSON.stringify(encodeTraceRequestJson(this.o.resource, scope, batch))) : encodeTraceRequestProto(this.o.resource, scope, batch);
    const headers: Record<string, string> = {
      ...this.o.headers,
      "content-type": this.o.protocol === "http/json" ? "application/json" : "application/x-protobuf",
      "user-agent": `damselfly/${version()}`,
    };
    if (this.o.gzip) {
      body = gzipSync(body);
      headers["content-encoding"] = "gzip";
    }
    headers["content-length"] = String(body.length);
    const mod = this.url.protocol === "https:" ? https : http;
    return new Promise<void>((resolve) => {
      const req = mod.request(this.url, { method: "POST", headers, agent: this.agent, timeout: this.o.timeoutMs }, (res) => {
        res.resume();
        res.on("end", () => {
          this.inflight.delete(req);
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) this.warn({ status, spans: batch.length }, "tracing: the OTLP receiver refused spans");
          resolve();
        });
        res.on("error", () => resolve());
      });
      this.inflight.add(req);
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.o.timeoutMs} ms`)));
      req.on("error", (err) => {
        this.inflight.delete(req);
        this.warn({ err: err.message, spans: batch.length }, "tracing: cannot send spans to the OTLP receiver");
        resolve();
      });
      req.end(body);
    });
  }

  private warn(obj: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.lastWarn < WARN_EVERY_MS) return;
    this.lastWarn = now;
    this.o.log?.warn({ ...obj, endpoint: this.o.url, dropped: this.dropped }, msg);
  }

  // Sends everything queued; gives up (dropping the rest) at the deadline.
  async shutdown(timeoutMs: number): Promise<void> {
    if (this.closed) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    });
    const flush = (async () => {
      while (this.sending || this.queue.length > 0) {
        if (this.sending) await this.sending;
        else this.kick();
      }
    })();
    await Promise.race([flush, deadline]);
    clearTimeout(timer);
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const r of this.inflight) r.destroy();
    this.agent.destroy();
    if (this.dropped > 0) this.o.log?.warn({ dropped: this.dropped }, "tracing: spans dropped (queue full)");
  }
}
