// The keys under an S3 prefix (ListObjectsV2, signed by the requesting node
// with its own credentials; continuation tokens followed, bounded).
import { request, type Dispatcher } from "undici";
import { DamselflyError } from "../errors.js";
import { readTextCapped } from "../streams.js";
import { loadCredentials, objectUrl, type S3Options } from "./s3-config.js";
import { httpRequest, signer } from "./s3-resolve.js";

const LIST_TIMEOUT_MS = 30_000;
// One ListObjectsV2 page (1,000 keys of at most 1 KiB each, plus metadata).
const MAX_PAGE_BYTES = 16 * 1024 * 1024;

export interface S3Listed {
  key: string;
  size: number;
  etag: string;
}

// S3's query encoding (RFC 3986 unreserved kept), the same the signer uses,
// so the signed and the sent query agree (URLSearchParams writes '+' for ' ').
const enc = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

const unxml = (s: string): string =>
  s.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-f]+));/gi, (_m, name: string, dec?: string, hex?: string) => {
    if (dec) return String.fromCodePoint(Number(dec));
    if (hex) return String.fromCodePoint(Number.parseInt(hex, 16));
    return ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" } as Record<string, string>)[name.toLowerCase()] ?? "";
  });

const tag = (xml: string, name: string): string | undefined => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];

// Every object under `prefix` in `bucket`; more than `max` is DF_ERR_USAGE.
// `dispatcher`: an agent of the caller's choice (the manager's egress policy).
export async function listS3Prefix(
  bucket: string,
  prefix: string,
  opts: S3Options,
  max: number,
  env: NodeJS.ProcessEnv = process.env,
  dispatcher?: Dispatcher,
): Promise<S3Listed[]> {
  const { url: base, region } = objectUrl({ bucket, key: "" }, opts, env);
  const sig = signer(region, loadCredentials(env));
  const out: S3Listed[] = [];
  let token = "";
  for (let page = 0; page <= Math.ceil(max / 1000) + 1; page++) {
    const url = new URL(base);
    url.search = `list-type=2&prefix=${enc(prefix)}${token ? `&continuation-token=${enc(token)}` : ""}`;
    const req = httpRequest({ method: "GET", url });
    req.query = { "list-type": "2", prefix, ...(token ? { "continuation-token": token } : {}) };
    req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
    const signed = await sig.sign(req);
    const xml = await fetchList(url, signed.headers as Record<string, string>, bucket, dispatcher);
    for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
      const key = unxml(tag(m[1]!, "Key") ?? "");
      if (!key.endsWith("/")) out.push({ key, size: Number(tag(m[1]!, "Size") ?? -1), etag: unxml(tag(m[1]!, "ETag") ?? "") });
    }
    if (out.length > max) throw new DamselflyError("DF_ERR_USAGE", `s3://${bucket}/${prefix} holds more than ${max} objects: narrow the prefix or --include`);
    token = tag(xml, "IsTruncated") === "true" ? unxml(tag(xml, "NextContinuationToken") ?? "") : "";
    if (token === "") return out;
  }
  throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `S3 listing of s3://${bucket}/${prefix} did not end`);
}

async function fetchList(url: URL, headers: Record<string, string>, bucket: string, dispatcher: Dispatcher | undefined): Promise<string> {
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, { headers, headersTimeout: LIST_TIMEOUT_MS, bodyTimeout: LIST_TIMEOUT_MS, ...(dispatcher ? { dispatcher } : {}) });
  } catch (err) {
    if ((err as { code?: string }).code === "DF_ERR_EGRESS_DENIED") throw DamselflyError.from(err);
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `S3 endpoint unreachable for s3://${bucket} (${url.origin})`, { cause: err, temporary: true });
  }
  const body = await readTextCapped(res.body, MAX_PAGE_BYTES, `S3 listing of s3://${bucket}`);
  const s = res.statusCode;
  if (s === 401 || s === 403) throw new DamselflyError("DF_ERR_SOURCE_AUTH", `S3 refused to list s3://${bucket} (HTTP ${s}): check the credentials and region`);
  if (s === 404) throw new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", `s3://${bucket}: no such bucket (HTTP 404)`);
  if (s !== 200) throw new DamselflyError("DF_ERR_SOURCE_STATUS", `S3 returned HTTP ${s} listing s3://${bucket}`, { temporary: s >= 500 });
  return body;
}
