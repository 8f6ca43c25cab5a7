import type { Dispatcher } from "undici";
import { DamselflyError } from "../../common/errors.js";
import { discard, fetchToken, MAX_MANIFEST_BYTES, readCapped, registryDispatcher, registryGet } from "./registry-client.js";

// Turns an image manifest URL (https://REGISTRY/v2/REPO/manifests/REF) into
// the URLs and digests of its layer blobs: an image index (or Docker manifest
// list) is narrowed to one platform first. Registries that answer 401 with a
// Bearer challenge get a token from their realm, with the caller's own
// credentials (Basic) when given and the realm may have them; what may be
// reached and read is bounded in registry-client.ts.

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
];
const INDEX_TYPES = new Set(MANIFEST_TYPES.slice(0, 2));

export interface ImageBlob {
  url: string;
  digest: string;
  size: number;
}

export interface ResolvedImage {
  // Headers that let whoever fetches the blobs read them (the registry token).
  headers: Record<string, string>;
  blobs: ImageBlob[];
}

interface Descriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

export function parseManifestUrl(raw: string): { base: string; repo: string; reference: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new DamselflyError("DF_ERR_INVALID_URL", `image URL ${JSON.stringify(raw)} is not an absolute URL`);
  }
  const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(u.pathname);
  if ((u.protocol !== "http:" && u.protocol !== "https:") || !m) {
    throw new DamselflyError(
      "DF_ERR_INVALID_URL",
      `image URL must look like https://REGISTRY/v2/REPOSITORY/manifests/TAG_OR_DIGEST, got ${JSON.stringify(raw)}`,
    );
  }
  return { base: `${u.protocol}//${u.host}`, repo: m[1]!, reference: decodeURIComponent(m[2]!) };
}

export function parsePlatform(p: string): { os: string; architecture: string; variant?: string } {
  const parts = p.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => x === ""))
    throw new DamselflyError("DF_ERR_INVALID_REQUEST", `platform ${JSON.stringify(p)}: expected os/arch[/variant]`);
  return { os: parts[0]!, architecture: parts[1]!, ...(parts[2] ? { variant: parts[2] } : {}) };
}

export interface ResolveOptions {
  signal?: AbortSignal;
  // Default: one made for this call, through the built-in egress policy.
  dispatcher?: Dispatcher;
}

export async function resolveImage(manifestUrl: string, given: Record<string, string>, platform: string, opts: ResolveOptions = {}): Promise<ResolvedImage> {
  const own = opts.dispatcher ? undefined : registryDispatcher();
  try {
    return await resolve(manifestUrl, given, platform, opts.dispatcher ?? own!, opts.signal);
  } finally {
    await own?.close();
  }
}

async function resolve(
  manifestUrl: string,
  given: Record<string, string>,
  platform: string,
  dispatcher: Dispatcher,
  signal?: AbortSignal,
): Promise<ResolvedImage> {
  const { base, repo, reference } = parseManifestUrl(manifestUrl);
  const want = parsePlatform(platform);
  const headers = { ...given };
  const basic = Object.entries(given).find(([k, v]) => k.toLowerCase() === "authorization" && /^basic\s/i.test(v))?.[1];

  const get = async (url: string): Promise<{ mediaType: string; body: Record<string, unknown> }> => {
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await registryGet(url, { ...headers, accept: MANIFEST_TYPES.join(", ") }, dispatcher, signal);
      if (res.statusCode === 401 && attempt === 0) {
        const challenge = String(res.headers["www-authenticate"] ?? "");
        discard(res);
        const token = await fetchToken(challenge, new URL(base), basic, dispatcher, signal);
        if (!token) throw new DamselflyError("DF_ERR_SOURCE_STATUS", `registry refused ${url} (401) and offered no bearer token`, { sourceStatus: 401 });
        for (const k of Object.keys(headers)) if (k.toLowerCase() === "authorization") delete headers[k];
        headers.authorization = `Bearer ${token}`;
        continue;
      }
      if (res.statusCode !== 200) {
        discard(res);
        throw new DamselflyError("DF_ERR_SOURCE_STATUS", `registry answered ${res.statusCode} for ${url}`, { sourceStatus: res.statusCode });
      }
      const text = (await readCapped(res, MAX_MANIFEST_BYTES, `manifest ${url}`)).toString("utf8");
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `manifest ${url} is not JSON`);
      }
      const mediaType = String(res.headers["content-type"] ?? body.mediaType ?? "")
        .split(";")[0]!
        .trim();
      return { mediaType: typeof body.mediaType === "string" ? body.mediaType : mediaType, body };
    }
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", `registry refused ${url} (401)`, { sourceStatus: 401 });
  };

  let m = await get(`${base}/v2/${repo}/manifests/${encodeURIComponent(reference)}`);
  if (INDEX_TYPES.has(m.mediaType) || Array.isArray(m.body.manifests)) {
    const list = (m.body.manifests ?? []) as Descriptor[];
    const pick = list.find(
      (d) =>
        d.platform?.os === want.os && d.platform?.architecture === want.architecture && (want.variant === undefined || d.platform?.variant === want.variant),
    );
    if (!pick?.digest) {
      const have = list.map((d) => [d.platform?.os, d.platform?.architecture, d.platform?.variant].filter(Boolean).join("/")).join(", ");
      throw new DamselflyError("DF_ERR_INVALID_REQUEST", `image has no ${platform} manifest (it has: ${have || "none"})`);
    }
    m = await get(`${base}/v2/${repo}/manifests/${pick.digest}`);
  }
  const layers = (m.body.layers ?? []) as Descriptor[];
  if (!Array.isArray(layers) || layers.length === 0) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `manifest of ${manifestUrl} lists no layers`);
  const blobs: ImageBlob[] = [];
  for (const l of layers) {
    if (typeof l.digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(l.digest))
      throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", "manifest layer without a sha256 digest");
    blobs.push({ url: `${base}/v2/${repo}/blobs/${l.digest}`, digest: l.digest, size: Number(l.size ?? 0) });
  }
  return { headers, blobs };
}
