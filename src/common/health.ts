// Liveness and readiness, answered alike on every server of a process:
//   GET /healthz  200 "ok" while the process serves requests at all;
//   GET /readyz   200 "ok" when every readiness check passes, else 503 with
//                 {"status":"not ready"}, and where the caller is known
//                 "checks":{"name":"ok" | "why not"} too.
// Checks are named functions that resolve to undefined (ready) or a reason.

export type ReadinessCheck = () => Promise<string | undefined> | string | undefined;

export const HEALTHZ_PATH = "/healthz";
export const READYZ_PATH = "/readyz";

export interface Readiness {
  ready: boolean;
  checks: Record<string, string>;
}

// What both node:http and node:http2 compatibility responses offer.
export interface HealthResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

// A check that has not answered by then (a hung disk, a database that
// accepts connections but never replies) counts as failed, so /readyz
// answers before a prober gives up on it.
const CHECK_TIMEOUT_MS = 5_000;

const OK_HEADERS = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };

export class Health {
  private readonly checks = new Map<string, ReadinessCheck>();

  // A later check of the same name replaces the earlier one.
  addCheck(name: string, check: ReadinessCheck): this {
    this.checks.set(name, check);
    return this;
  }

  async readiness(): Promise<Readiness> {
    const names = [...this.checks.keys()];
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${CHECK_TIMEOUT_MS} ms`), CHECK_TIMEOUT_MS);
    });
    const results = await Promise.all(
      [...this.checks.values()].map(async (c) => {
        try {
          return await Promise.race([c(), late]);
        } catch (err) {
          return err instanceof Error ? err.message : String(err);
        }
      }),
    );
    clearTimeout(timer);
    const checks: Record<string, string> = {};
    let ready = true;
    names.forEach((n, i) => {
      checks[n] = results[i] ?? "ok";
      if (results[i] !== undefined) ready = false;
    });
    return { ready, checks };
  }

  // Answers /healthz or /readyz (the caller matched the path). Other methods
  // than GET and HEAD get 405. With `detail`, a 503 names each check and why
  // it fails (scheduler addresses, storage errors): only for callers the
  // listener knows (a Unix socket, a client certificate, the operator's
  // metrics port); any other prober learns ready or not, nothing more.
  async answer(path: string, method: string | undefined, res: HealthResponse, o: { detail?: boolean } = {}): Promise<void> {
    if (method !== "GET" && method !== "HEAD") {
      res.writeHead(405, { ...OK_HEADERS, allow: "GET, HEAD" });
      res.end("method not allowed\n");
      return;
    }
    const body = (text: string) => (method === "HEAD" ? "" : text);
    if (path === HEALTHZ_PATH) {
      res.writeHead(200, OK_HEADERS);
      res.end(body("ok\n"));
      return;
    }
    const r = await this.readiness();
    if (r.ready) {
      res.writeHead(200, OK_HEADERS);
      res.end(body("ok\n"));
      return;
    }
    res.writeHead(503, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(body(JSON.stringify(o.detail ? { status: "not ready", checks: r.checks } : { status: "not ready" }) + "\n"));
  }
}

export function isHealthPath(path: string): boolean {
  return path === HEALTHZ_PATH || path === READYZ_PATH;
}

// Runs `probe` at most once per `ttlMs` (callers in between share the last
// answer or the probe under way): a readiness endpoint polled by several
// probers must not turn into disk or network load.
export function cachedCheck(probe: () => Promise<string | undefined>, ttlMs: number): ReadinessCheck {
  let last: { at: number; result: Promise<string | undefined> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ttlMs) {
      last = { at: now, result: probe().catch((err: unknown) => (err instanceof Error ? err.message : String(err))) };
    }
    return last.result;
  };
}
