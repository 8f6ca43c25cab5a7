// ListObjectsV2 pagination for the S3 fixture (s3-server.ts). s3rver makes
// its continuation tokens with DES, which OpenSSL 3 no longer offers, so a
// truncated V2 listing fails inside it. With a page size set, the front
// answers V2 listings itself: it asks s3rver for a V1 page (marker and
// max-keys, which need no cipher) and answers as S3 does for V2 — at most
// `pageSize` keys, IsTruncated, an opaque NextContinuationToken, KeyCount —
// so clients exercise the continuation path real stores take past 1,000 keys.
import type { SignatureV4 } from "@smithy/signature-v4";
import http from "node:http";

const unxml = (s: string): string => s.replace(/&(lt|gt|quot|apos|amp);/g, (_m, n: string) => ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" })[n] ?? "");

// Whether this request is a ListObjectsV2 call (path style: GET /BUCKET?list-type=2).
export function isListV2(req: http.IncomingMessage): boolean {
  const u = new URL(req.url ?? "/", "http://x");
  return req.method === "GET" && /^\/[^/]+\/?$/.test(u.pathname) && u.searchParams.get("list-type") === "2";
}

export async function answerListV2(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  o: { storePort: number; signer: SignatureV4; pageSize: number; count: (bytes: number) => void },
): Promise<void> {
  const u = new URL(req.url ?? "/", "http://x");
  const bucket = u.pathname.replace(/^\/|\/$/g, "");
  const token = u.searchParams.get("continuation-token") ?? "";
  const after = token ? Buffer.from(token, "base64url").toString("utf8") : (u.searchParams.get("start-after") ?? "");
  const query: Record<string, string> = { prefix: u.searchParams.get("prefix") ?? "", "max-keys": String(o.pageSize) };
  if (after) query.marker = after;
  const host = `127.0.0.1:${o.storePort}`;
  const signed = await o.signer.sign({
    method: "GET",
    protocol: "http:",
    hostname: "127.0.0.1",
    port: o.storePort,
    path: `/${bucket}`,
    query,
    headers: { host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
  });
  const path = `/${bucket}?${new URLSearchParams(query).toString().replace(/\+/g, "%20")}`;
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const up = http.request({ host: "127.0.0.1", port: o.storePort, method: "GET", path, headers: signed.headers as Record<string, string> }, (ur) => {
      const chunks: Buffer[] = [];
      ur.on("data", (c: Buffer) => chunks.push(c));
      ur.on("end", () => resolve({ status: ur.statusCode ?? 502, body: Buffer.concat(chunks).toString("utf8") }));
      ur.on("error", reject);
    });
    up.on("error", reject);
    up.end();
  });
  let xml = body;
  if (status === 200) {
    const keys = [...body.matchAll(/<Contents>[\s\S]*?<Key>([^<]*)<\/Key>/g)].map((m) => unxml(m[1]!));
    const truncated = /<IsTruncated>true<\/IsTruncated>/.test(body);
    const next = truncated && keys.length > 0 ? `<NextContinuationToken>${Buffer.from(keys.at(-1)!).toString("base64url")}</NextContinuationToken>` : "";
    const echo = token ? `<ContinuationToken>${token}</ContinuationToken>` : "";
    xml = body
      .replace(/<Marker>[^<]*<\/Marker>|<Marker\/>/, "")
      .replace("</ListBucketResult>", `<KeyCount>${keys.length}</KeyCount>${echo}${next}</ListBucketResult>`);
  }
  const out = Buffer.from(xml);
  o.count(out.length);
  res.writeHead(status, { "content-type": "application/xml", "content-length": out.length }).end(out);
}
