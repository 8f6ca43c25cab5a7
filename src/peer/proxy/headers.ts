import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

// RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

function connectionTokens(h: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Set<string> {
  const c = h["connection"];
  const list = Array.isArray(c) ? c.join(",") : (c ?? "");
  return new Set(
    list
      .split(",")
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
}

// End-to-end request headers for the upstream: hop-by-hop ones, Host (the
// upstream's is set by the client library) and our own routing headers go.
export function upstreamRequestHeaders(h: IncomingHttpHeaders, drop: readonly string[] = []): Record<string, string> {
  const extra = connectionTokens(h);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || extra.has(k) || k === "host" || k.startsWith("x-damselfly-") || drop.includes(k)) continue;
    out[k] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

// Headers that decide which bytes or which representation come back (the
// P2P path answers those itself) or that describe one client (the shared
// fetch identifies the daemon): not part of what travels with a task.
export const NOT_SHARED_WITH_ORIGIN = [
  "range",
  "if-range",
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
  "accept-encoding",
  "content-length",
  "user-agent",
];

// Response headers from the upstream for the client, minus hop-by-hop ones.
export function clientResponseHeaders(h: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const extra = connectionTokens(h);
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || extra.has(k)) continue;
    out[k] = v;
  }
  return out;
}
