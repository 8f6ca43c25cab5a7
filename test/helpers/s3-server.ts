// A real S3-compatible server for tests: s3rver (it verifies SigV4 header and
// query signatures against its one account, S3RVER/S3RVER) on 127.0.0.1,
// behind a front that checks SigV4 signatures, which s3rver does not, with
// the same signing library against the known secret (header and presigned
// query forms, and expiry), and counts the body bytes the store sends.
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { createReadStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { answerListV2, isListV2 } from "./s3-pages.js";

export const S3_ACCESS_KEY = "S3RVER";
export const S3_SECRET = "S3RVER";

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (opts: Record<string, unknown>) => S3rverInstance;

export interface S3Server {
  // http://127.0.0.1:PORT: the counting relay in front of the store.
  endpoint: string;
  bytesSent(): number;
  // ListObjectsV2 pages the front answered itself (with opts.pageSize).
  listPages(): number;
  // Body bytes sent for one object (GETs of /BUCKET/KEY, path-style).
  bytesSentFor(bucket: string, key: string): number;
  put(bucket: string, key: string, body: Buffer): Promise<void>;
  // Uploads a file from disk, streamed (s3rver writes it to disk as it comes).
  putFile(bucket: string, key: string, path: string): Promise<void>;
  close(): Promise<void>;
}

// opts.host: the address the front binds (default 127.0.0.1; the testbed
// gives its origin namespace's address); the store itself stays on loopback.
// opts.dir: where the store's temporary directory goes.
// opts.pageSize: ListObjectsV2 answers at most this many keys a page, with
// continuation tokens (s3-pages.ts); default: s3rver's own (1,000).
export async function startS3Server(buckets: readonly string[], opts: { host?: string; dir?: string; pageSize?: number } = {}): Promise<S3Server> {
  const host = opts.host ?? "127.0.0.1";
  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), "damselfly-s3rver-"));
  const S3rver = createRequire(import.meta.url)("s3rver") as S3rverCtor;
  const store = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: dir, configureBuckets: buckets.map((name) => ({ name })) });
  const { port: storePort } = await store.run();
  let sent = 0;
  let pages = 0;
  const sentByPath = new Map<string, number>();
  const signer = new SignatureV4({
    service: "s3",
    region: "us-east-1",
    credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET },
    sha256: Sha256,
    uriEscapePath: false,
  });
  const front = http.createServer((req, res) => {
    verifySigV4(signer, req, host).then(
      (refusal) => {
        if (refusal) {
          res.writeHead(403, { "content-type": "application/xml" }).end(`<Error><Code>SignatureDoesNotMatch</Code><Message>${refusal}</Message></Error>`);
          return;
        }
        if (opts.pageSize && isListV2(req)) {
          pages++;
          answerListV2(req, res, { storePort, signer, pageSize: opts.pageSize, count: (n) => void (sent += n) }).catch(() => res.destroy());
          return;
        }
        // s3rver reads "bytes=N-N" (one byte) as "from N to the end"; S3 sends the one byte.
        const oneByte = /^bytes=(\d+)-\1$/.test(String(req.headers["range"] ?? ""));
        const headers = oneByte ? { ...req.headers, range: String(req.headers["range"]).replace(/-\d+$/, (m) => `-${Number(m.slice(1)) + 1}`) } : req.headers;
        const up = http.request({ host: "127.0.0.1", port: storePort, method: req.method, path: req.url, headers }, (ur) => {
          if (oneByte && ur.statusCode === 206) return sendOneByte(ur, res, (n) => void (sent += n));
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          const path = safeDecode(new URL(req.url ?? "/", "http://x").pathname);
          ur.on("data", (b: Buffer) => {
            sent += b.length;
            sentByPath.set(path, (sentByPath.get(path) ?? 0) + b.length);
          }).pipe(res);
          // A client that hangs up stops the store's read too.
          res.on("close", () => ur.destroy());
        });
        up.on("error", () => res.destroy());
        req.pipe(up);
      },
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((r) => front.listen(0, host, r));
  const endpoint = `http://${host}:${(front.address() as AddressInfo).port}`;
  const put = async (bucket: string, key: string, body: Buffer | (() => NodeJS.ReadableStream), length: number) => {
    const u = new URL(`${endpoint}/${bucket}/${key}`);
    const req = {
      method: "PUT",
      protocol: "http:",
      hostname: u.hostname,
      port: Number(u.port),
      path: u.pathname,
      query: {},
      headers: { host: u.host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "content-length": String(length) },
    };
    const signed = await signer.sign(req);
    const data = Buffer.isBuffer(body) ? body : (body() as import("node:stream").Readable);
    const res = await request(u, { method: "PUT", headers: signed.headers as Record<string, string>, body: data });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`PUT ${u}: HTTP ${res.statusCode} ${text}`);
  };
  return {
    endpoint,
    bytesSent: () => sent,
    listPages: () => pages,
    bytesSentFor: (bucket, key) => sentByPath.get(`/${bucket}/${key}`) ?? 0,
    put: (bucket, key, body) => put(bucket, key, body, body.length),
    putFile: (bucket, key, path) => put(bucket, key, () => createReadStream(path), statSync(path).size),
    async close() {
      front.closeAllConnections();
      await new Promise<void>((r) => front.close(() => r()));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The first byte of a two-byte 206 as the one-byte answer S3 gives.
function sendOneByte(ur: http.IncomingMessage, res: http.ServerResponse, count: (n: number) => void): void {
  const m = /^bytes (\d+)-\d+\/(\d+)$/.exec(String(ur.headers["content-range"] ?? ""));
  const chunks: Buffer[] = [];
  ur.on("data", (b: Buffer) => chunks.push(b));
  ur.on("end", () => {
    const body = Buffer.concat(chunks).subarray(0, 1);
    count(body.length);
    const headers = { ...ur.headers, "content-length": String(body.length), "content-range": m ? `bytes ${m[1]}-${m[1]}/${m[2]}` : "" };
    res.writeHead(206, headers).end(body);
  });
}

const QUERY_AUTH = ["x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders", "x-amz-signature"];

// Signs the request again as the client should have and compares: undefined
// when it matches, else why not.
async function verifySigV4(signer: SignatureV4, req: http.IncomingMessage, hostname: string): Promise<string | undefined> {
  const u = new URL(req.url ?? "/", "http://x");
  const query: Record<string, string> = {};
  for (const [k, v] of u.searchParams) if (!QUERY_AUTH.includes(k.toLowerCase())) query[k] = v;
  const base = { method: req.method ?? "GET", protocol: "http:", hostname, path: u.pathname, query };
  const auth = req.headers["authorization"];
  if (typeof auth === "string") {
    const m = /^AWS4-HMAC-SHA256 Credential=[^/]+\/\d{8}\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(auth);
    const date = req.headers["x-amz-date"];
    if (!m || typeof date !== "string") return "malformed Authorization";
    const headers: Record<string, string> = {};
    for (const h of m[2]!.split(";")) headers[h] = String(req.headers[h] ?? "");
    const signed = await signer.sign({ ...base, headers }, { signingDate: amzDate(date), signingRegion: m[1]! });
    return String(signed.headers["authorization"]).endsWith(`Signature=${m[3]}`) ? undefined : "signature does not match";
  }
  const sig = u.searchParams.get("X-Amz-Signature");
  const date = u.searchParams.get("X-Amz-Date") ?? "";
  const region = /\/\d{8}\/([^/]+)\//.exec(u.searchParams.get("X-Amz-Credential") ?? "")?.[1];
  if (!sig || !region) return "no signature";
  const expires = Number(u.searchParams.get("X-Amz-Expires"));
  if (amzDate(date).getTime() + expires * 1000 < Date.now()) return "request has expired";
  const headers: Record<string, string> = { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" };
  for (const h of (u.searchParams.get("X-Amz-SignedHeaders") ?? "").split(";")) headers[h] = String(req.headers[h] ?? "");
  const unsent = new Set(["x-amz-content-sha256"]);
  const again = await signer.presign(
    { ...base, headers },
    { signingDate: amzDate(date), signingRegion: region, expiresIn: expires, unhoistableHeaders: unsent, unsignableHeaders: unsent },
  );
  return again.query?.["X-Amz-Signature"] === sig ? undefined : "signature does not match";
}

function amzDate(s: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  return m ? new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)) : new Date(0);
}

function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
