// Scrapes a Prometheus text endpoint and reads samples out of it.
import http2 from "node:http2";
import { request } from "undici";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

// The sum of the samples named `name` whose labels include `labels`.
export function metric(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

export async function scrape(hostPort: string): Promise<Sample[]> {
  const r = await request(`http://${hostPort}/metrics`);
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`GET http://${hostPort}/metrics: ${r.statusCode} ${text}`);
  if (!String(r.headers["content-type"]).startsWith("text/plain")) throw new Error(`unexpected content type ${String(r.headers["content-type"])}`);
  return parsePrometheus(text);
}

export async function httpGet(url: string, method = "GET"): Promise<{ status: number; body: string }> {
  const r = await request(url, { method: method as "GET" });
  return { status: r.statusCode, body: await r.body.text() };
}

// GET over cleartext HTTP/2 (the Connect servers speak nothing else).
export function h2Get(hostPort: string, path: string, method = "GET"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${hostPort}`);
    session.on("error", reject);
    const req = session.request({ ":path": path, ":method": method });
    let body = "";
    let status = 0;
    req.setEncoding("utf8");
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      session.close();
      resolve({ status, body });
    });
    req.on("error", (e) => {
      session.close();
      reject(e);
    });
    req.end();
  });
}
