// Test images made locally: makeOciImage writes an OCI image layout whose
// layers are gzip'd tars, each holding one file of seeded random (so
// incompressible) bytes, streamed so 100+ MB layers never sit in memory;
// pushImage copies a layout into a registry with skopeo.
import { createCipheriv, createHash, type Hash } from "node:crypto";
import { createWriteStream, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { runCommand, type CommandResult } from "./netns.js";

export const MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
export const MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

export interface LayerSpec {
  // Size of the one file in the layer, in bytes (the gzip'd layer is
  // slightly larger: ~size + 1.5 KiB tar framing + ~0.03% deflate overhead).
  size: number;
}

export interface OciImageOptions {
  layers: LayerSpec[];
  // Content seed: the same seed and sizes give the same digests (default 0).
  seed?: number | string;
  // org.opencontainers.image.ref.name of the manifest in index.json
  // (default "latest"); `oci:<dir>` without a tag works too, as the index
  // holds one manifest.
  tag?: string;
}

export interface OciBlob {
  // "sha256:<hex>"
  digest: string;
  // Bytes of the blob as stored and served (the compressed layer).
  size: number;
}

export interface OciLayer extends OciBlob {
  // sha256 of the uncompressed tar ("sha256:<hex>"), as in rootfs.diff_ids.
  diffId: string;
  // Name and size of the file inside the tar.
  fileName: string;
  fileSize: number;
}

export interface OciImage {
  layoutDir: string;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  configSize: number;
  layers: OciLayer[];
  // Sum of the layer blob sizes.
  totalLayerBytes: number;
}

// A 512-byte ustar header for a regular file.
export function tarHeader(name: string, size: number, mtime: number, mode = 0o644): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  if (size > 0o77777777777) throw new Error(`tar entry too large: ${size}`);
  const h = Buffer.alloc(512);
  const str = (off: number, len: number, s: string) => h.write(s, off, len, "utf8");
  const oct = (off: number, len: number, n: number) => str(off, len, n.toString(8).padStart(len - 1, "0") + "\0");
  str(0, 100, name);
  oct(100, 8, mode);
  oct(108, 8, 0); // uid
  oct(116, 8, 0); // gid
  oct(124, 12, size);
  oct(136, 12, mtime);
  h.fill(0x20, 148, 156); // checksum field counts as spaces
  str(156, 1, "0"); // regular file
  str(257, 6, "ustar\0");
  str(263, 2, "00");
  str(265, 32, "root");
  str(297, 32, "root");
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i]!;
  // Six octal digits, NUL, space (the classic format).
  str(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return h;
}

// The uncompressed tar, chunk by chunk: header, seeded AES-CTR keystream
// bytes, padding to 512, two zero blocks.
async function* tarStream(fileName: string, size: number, seed: string, mtime: number): AsyncGenerator<Buffer> {
  yield tarHeader(fileName, size, mtime);
  const key = createHash("sha256").update(`damselfly-oci-seed:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
  const CHUNK = 1 << 20;
  const zeros = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
  for (let off = 0; off < size; off += CHUNK) {
    const n = Math.min(CHUNK, size - off);
    yield cipher.update(zeros.subarray(0, n));
  }
  const pad = (512 - (size % 512)) % 512;
  yield Buffer.alloc(pad + 1024);
}

// Passes chunks through, hashing and counting them.
class Tap extends Transform {
  readonly hash: Hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

function writeBlob(blobsDir: string, data: Buffer): OciBlob {
  const hex = createHash("sha256").update(data).digest("hex");
  writeFileSync(join(blobsDir, hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

const FIXED_TIME = "2024-01-01T00:00:00Z";
const FIXED_MTIME = Date.parse(FIXED_TIME) / 1000;

export async function makeOciImage(dir: string, o: OciImageOptions): Promise<OciImage> {
  if (!o.layers.length) throw new Error("makeOciImage: at least one layer");
  const layoutDir = resolve(dir);
  const blobsDir = join(layoutDir, "blobs", "sha256");
  mkdirSync(blobsDir, { recursive: true });
  const seed = String(o.seed ?? 0);

  const layers: OciLayer[] = [];
  for (const [i, spec] of o.layers.entries()) {
    if (!Number.isSafeInteger(spec.size) || spec.size < 0) throw new Error(`layer ${i}: bad size ${spec.size}`);
    const fileName = `layer-${i}.bin`;
    const tmp = join(blobsDir, `.tmp-layer-${i}-${process.pid}`);
    const raw = new Tap();
    const gz = new Tap();
    await pipeline(
      Readable.from(tarStream(fileName, spec.size, `${seed}:${i}:${spec.size}`, FIXED_MTIME), { objectMode: false }),
      raw,
      createGzip({ level: 1 }),
      gz,
      createWriteStream(tmp),
    );
    const hex = gz.hash.digest("hex");
    renameSync(tmp, join(blobsDir, hex));
    layers.push({ digest: `sha256:${hex}`, size: gz.bytes, diffId: `sha256:${raw.hash.digest("hex")}`, fileName, fileSize: spec.size });
  }

  const config = {
    created: FIXED_TIME,
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["/bin/true"] },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l, i) => ({ created: FIXED_TIME, created_by: `damselfly test layer ${i}: ${l.fileName} (${l.fileSize} bytes)` })),
  };
  const cfg = writeBlob(blobsDir, Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_MANIFEST,
    config: { mediaType: MEDIA_TYPE_OCI_CONFIG, digest: cfg.digest, size: cfg.size },
    layers: layers.map((l) => ({ mediaType: MEDIA_TYPE_OCI_LAYER_GZIP, digest: l.digest, size: l.size })),
  };
  const man = writeBlob(blobsDir, Buffer.from(JSON.stringify(manifest)));
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_OCI_INDEX,
    manifests: [
      {
        mediaType: MEDIA_TYPE_OCI_MANIFEST,
        digest: man.digest,
        size: man.size,
        platform: { architecture: "amd64", os: "linux" },
        annotations: { "org.opencontainers.image.ref.name": o.tag ?? "latest" },
      },
    ],
  };
  writeFileSync(join(layoutDir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(layoutDir, "index.json"), JSON.stringify(index));
  return {
    layoutDir,
    manifestDigest: man.digest,
    manifestSize: man.size,
    configDigest: cfg.digest,
    configSize: cfg.size,
    layers,
    totalLayerBytes: layers.reduce((a, l) => a + l.size, 0),
  };
}

export interface PushOptions {
  // "user:password" or { user, password } for --dest-creds.
  creds?: string | { user: string; password: string };
  // false (the default) for a plain-http registry (or to skip verification):
  // --dest-tls-verify=false. true: verify (with certDir for a test CA).
  tlsVerify?: boolean;
  // --dest-cert-dir: a directory of *.crt CA files (see makeTestCert().certDir).
  certDir?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

export interface PushResult extends CommandResult {
  argv: string[];
}

function credsArg(c: string | { user: string; password: string }): string {
  return typeof c === "string" ? c : `${c.user}:${c.password}`;
}

// skopeo copy oci:<layoutDir> docker://<ref>; rejects unless it exits 0.
// ref: "127.0.0.1:5000/test/app:v1".
export async function pushImage(layoutDir: string, ref: string, o: PushOptions = {}): Promise<PushResult> {
  const argv = ["copy", "--retry-times", "0"];
  argv.push(`--dest-tls-verify=${o.tlsVerify ?? false}`);
  if (o.creds) argv.push("--dest-creds", credsArg(o.creds));
  else argv.push("--dest-no-creds");
  if (o.certDir) argv.push("--dest-cert-dir", o.certDir);
  argv.push(`oci:${resolve(layoutDir)}`, `docker://${ref}`);
  const r = await runCommand("skopeo", argv, {
    timeoutMs: o.timeoutMs ?? 300_000,
    // Keep the runner's docker/podman credentials and proxies out of it.
    env: {
      REGISTRY_AUTH_FILE: undefined,
      DOCKER_CONFIG: undefined,
      HTTP_PROXY: undefined,
      HTTPS_PROXY: undefined,
      http_proxy: undefined,
      https_proxy: undefined,
      ...o.env,
    },
  });
  const shown = argv.map((a, i) => (argv[i - 1] === "--dest-creds" ? "<creds>" : a));
  if (r.code !== 0) throw new Error(`skopeo ${shown.join(" ")} exited ${r.code ?? r.signal} after ${r.elapsedMs}ms\n${r.stderr}${r.stdout}`);
  return { ...r, argv: ["skopeo", ...shown] };
}
