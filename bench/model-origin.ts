// A model's origin for the benchmarks: the tests' Hugging Face Hub fixture or
// S3 server (test/helpers/hub.ts, s3-server.ts) serving files from disk,
// streamed, in a process of its own.
//   node dist/bench/model-origin.js hf|s3 HOST DATA_DIR FILE...
// hf: the hub and its CDN on HOST, the repository bench/model holding every
//     FILE (by its base name) as an LFS file; endpoint = the hub (HF_ENDPOINT).
// s3: s3rver (its store under DATA_DIR, on loopback) behind the SigV4 front on
//     HOST, bucket "models", keys bench/model/<base name>; credentials
//     S3RVER/S3RVER.
// Prints "listening <endpoint>" once the files are in, and on SIGUSR2
// "sent <bytes>": body bytes the hub and CDN, or the S3 front, sent.
import { basename } from "node:path";
import { diskFile, startHub } from "../test/helpers/hub.js";
import { startS3Server } from "../test/helpers/s3-server.js";
import { MODEL_BUCKET, MODEL_PREFIX, MODEL_REPO } from "./testbed/model.js";

const [kind, host, dataDir, ...files] = process.argv.slice(2);
if ((kind !== "hf" && kind !== "s3") || !host || !dataDir || files.length === 0) {
  process.stderr.write("usage: model-origin hf|s3 HOST DATA_DIR FILE...\n");
  process.exit(2);
}
let endpoint: string;
let sent: () => number;
let close: () => Promise<void>;
if (kind === "hf") {
  const hub = await startHub({ host });
  const spec: Record<string, Awaited<ReturnType<typeof diskFile>>> = {};
  for (const f of files) spec[basename(f)] = await diskFile(f);
  hub.repos.create("model", MODEL_REPO).commit(spec);
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  endpoint = hub.url;
  sent = () => total(hub.hubBytes) + total(hub.cdnBytes);
  close = () => hub.close();
} else {
  const s3 = await startS3Server([MODEL_BUCKET], { host, dir: dataDir });
  for (const f of files) await s3.putFile(MODEL_BUCKET, MODEL_PREFIX + basename(f), f);
  endpoint = s3.endpoint;
  // The uploads above went in, not out: they are not in bytesSent.
  sent = () => s3.bytesSent();
  close = () => s3.close();
}
process.stdout.write(`listening ${endpoint}\n`);
process.on("SIGUSR2", () => process.stdout.write(`sent ${sent()}\n`));
process.on("SIGTERM", () => void close().finally(() => process.exit(0)));
