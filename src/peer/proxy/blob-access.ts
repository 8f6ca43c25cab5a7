import { createHash } from "node:crypto";
import { request, type Dispatcher } from "undici";
import { USER_AGENT } from "../source/http-source.js";

export type AccessAnswer =
  // size: -1 when no hop said.
  { allowed: true; size: number } | { allowed: false; status: number };

const MAX_ENTRIES = 10_000;
const MAX_REDIRECTS = 5;
// Headers that must not follow a redirect to another origin.
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];

// Asks the registry whether *this* client may read a blob before the daemon
// serves it from the swarm: a HEAD with the client's own credentials. Without
// this, a blob cached for one tenant would be served to anyone who knows its
// digest. A blob's task is bound to its registry (common/task-id.ts), so the
// registry asked is the one the swarm's copy came from.
//
// Only a final 200 (or 206) is a yes. A redirect is followed, as a GET of
// the first byte (a pre-signed storage URL is signed for GET), each hop's
// connection passing the egress policy of the dispatcher, credentials
// dropped at another origin; a redirect alone proves nothing (any server can
// send one). Anything else, an error included, is a no: the caller forwards
// the request to the registry, which then answers the client itself.
// Yes-answers are reused for `ttlMs` per (URL, credentials).
export class BlobAccess {
  private readonly cache = new Map<string, { answer: AccessAnswer & { allowed: true }; expires: number }>();

  constructor(private readonly o: { dispatcher: Dispatcher; ttlMs: number; timeoutMs: number }) {}

  // `ranged`: ask with a GET of the first byte from the start (a presigned
  // URL is signed for GET only, so a HEAD would be refused).
  async check(url: string, headers: Record<string, string>, signal: AbortSignal, ranged = false): Promise<AccessAnswer> {
    const key = createHash("sha256")
      .update(ranged ? "GET\0" : "HEAD\0")
      .update(url)
      .update("\0")
      .update(headers["authorization"] ?? "")
      .update("\0")
      .update(headers["cookie"] ?? "")
      .digest("hex");
    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now()) return hit.answer;
    if (hit) this.cache.delete(key);
    const answer = await this.ask(url, headers, AbortSignal.any([signal, AbortSignal.timeout(this.o.timeoutMs)]), ranged);
    return answer.allowed ? this.remember(key, answer) : answer;
  }

  private async ask(first: string, clientHeaders: Record<string, string>, signal: AbortSignal, rangedFirst: boolean): Promise<AccessAnswer> {
    let url = new URL(first);
    let headers: Record<string, string> = { "user-agent": USER_AGENT, ...clientHeaders, "accept-encoding": "identity" };
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const ranged = hop > 0 || rangedFirst;
      const res = await request(url, {
        method: ranged ? "GET" : "HEAD",
        headers: ranged ? { ...headers, range: "bytes=0-0" } : headers,
        dispatcher: this.o.dispatcher,
        signal,
      });
      // Only the headers matter (a body a server sends anyway is cut short).
      res.body.on("error", () => undefined).destroy();
      const s = res.statusCode;
      const location = res.headers["location"];
      if (s >= 300 && s < 400) {
        if (typeof location !== "string") return { allowed: false, status: s };
        const next = new URL(location, url);
        if (next.protocol !== "http:" && next.protocol !== "https:") return { allowed: false, status: s };
        if (next.origin !== url.origin) headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.includes(k.toLowerCase())));
        url = next;
        continue;
      }
      if (s === 200) return { allowed: true, size: lengthOf(res.headers["content-length"]) };
      if (s === 206 && ranged) return { allowed: true, size: totalOf(res.headers["content-range"]) };
      return { allowed: false, status: s };
    }
    return { allowed: false, status: 508 };
  }

  private remember(key: string, answer: AccessAnswer & { allowed: true }): AccessAnswer {
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { answer, expires: Date.now() + this.o.ttlMs });
    return answer;
  }
}

function lengthOf(v: string | string[] | undefined): number {
  return typeof v === "string" && /^\d+$/.test(v) ? Number(v) : -1;
}

function totalOf(v: string | string[] | undefined): number {
  const m = typeof v === "string" ? /^bytes \d+-\d+\/(\d+)$/.exec(v) : null;
  return m ? Number(m[1]) : -1;
}
