import { createHash } from "node:crypto";
import { request, type Dispatcher } from "undici";
import { USER_AGENT } from "../source/http-source.js";

export type AccessAnswer =
  // size: -1 when the registry redirected (to blob storage) without a length.
  { allowed: true; size: number } | { allowed: false; status: number };

const MAX_ENTRIES = 10_000;

// Asks the registry whether *this* client may read a blob before the daemon
// serves it from the swarm: a HEAD with the client's own credentials. Without
// this, a blob cached for one tenant would be served to anyone who knows its
// digest. Yes-answers are reused for `ttlMs` per (URL, credentials).
export class BlobAccess {
  private readonly cache = new Map<string, { answer: AccessAnswer & { allowed: true }; expires: number }>();

  constructor(private readonly o: { dispatcher: Dispatcher; ttlMs: number; timeoutMs: number }) {}

  async check(url: string, headers: Record<string, string>, signal: AbortSignal): Promise<AccessAnswer> {
    const key = createHash("sha256")
      .update(url)
      .update("\0")
      .update(headers["authorization"] ?? "")
      .update("\0")
      .update(headers["cookie"] ?? "")
      .digest("hex");
    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now()) return hit.answer;
    if (hit) this.cache.delete(key);
    const res = await request(url, {
      method: "HEAD",
      headers: { "user-agent": USER_AGENT, ...headers, "accept-encoding": "identity" },
      dispatcher: this.o.dispatcher,
      signal: AbortSignal.any([signal, AbortSignal.timeout(this.o.timeoutMs)]),
    });
    res.body.resume();
    const s = res.statusCode;
    if (s >= 300 && s < 400) return this.remember(key, { allowed: true, size: -1 });
    if (s !== 200) return { allowed: false, status: s };
    const cl = res.headers["content-length"];
    return this.remember(key, { allowed: true, size: typeof cl === "string" && /^\d+$/.test(cl) ? Number(cl) : -1 });
  }

  private remember(key: string, answer: AccessAnswer & { allowed: true }): AccessAnswer {
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { answer, expires: Date.now() + this.o.ttlMs });
    return answer;
  }
}
