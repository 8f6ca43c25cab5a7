// `damselfly cache import|export|stat`: files with no origin. The client
// hashes the file, streams it to the local daemon (the daemon never opens a
// path a request names), and prints the task ID, which is made of the
// content's sha256 (protocol/cache-task.ts). Export asks the daemon (and
// through it the scheduler) for the digest behind an ID, believes it only if
// the ID is made of it, downloads the task through the swarm and checks
// every byte against it before the file is renamed into place.
import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { DamselflyError } from "../common/errors.js";
import { parseDuration } from "../common/config.js";
import { hashFile, parseDigest, formatDigest } from "../common/digest.js";
import { isTaskId } from "../common/task-id.js";
import type { CacheConfig } from "../common/schemas.js";
import { cacheDownload, daemonv1, isCacheDigestOf } from "../protocol/index.js";
import { client } from "./cache.js";
import { formatBytes } from "./format.js";
import { copyStoreFile, outputTarget, placeOutput, readStoreFile, writeInto, type Write } from "./output-file.js";

export interface TransferIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  // Aborted on Ctrl-C: the call is cancelled, nothing is left behind.
  signal?: AbortSignal;
}

type Client = {
  importTask(reqs: AsyncIterable<daemonv1.ImportTaskRequest>, opts: object): Promise<daemonv1.ImportTaskResponse>;
  statCacheTask(req: object, opts: object): Promise<daemonv1.StatCacheTaskResponse>;
  downloadTask(req: daemonv1.DownloadTaskRequest, opts: object): AsyncIterable<daemonv1.DownloadTaskResponse>;
};

const MAX_REPLICAS = 16;
const CHUNK = 1024 * 1024;
const usage = (m: string) => new DamselflyError("DF_ERR_USAGE", m);

export interface ImportOptions {
  replicas?: string;
  ttl?: string;
  replicaTimeout?: string;
}

function importHeader(o: ImportOptions): { replicas: number; taskTtlMs: bigint; replicaTimeoutMs: bigint } {
  const replicas = o.replicas === undefined ? 1 : Number(o.replicas);
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS) throw usage(`--replicas must be an integer 0..${MAX_REPLICAS}`);
  const ms = (flag: string, v: string | undefined): bigint => {
    if (v === undefined) return 0n;
    let n: number;
    try {
      n = parseDuration(v);
    } catch (err) {
      throw usage(`${flag}: ${(err as Error).message}`);
    }
    if (n <= 0) throw usage(`${flag} must be > 0`);
    return BigInt(Math.round(n));
  };
  return { replicas, taskTtlMs: ms("--ttl", o.ttl), replicaTimeoutMs: ms("--replica-timeout", o.replicaTimeout) };
}

export async function cacheImport(config: CacheConfig, file: string, o: ImportOptions, io: TransferIo): Promise<void> {
  const h = importHeader(o);
  const st = await stat(file).catch((e: NodeJS.ErrnoException) => {
    throw usage(`cannot read ${file}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  });
  if (!st.isFile()) throw usage(`${file} is not a regular file`);
  // First pass: the digest the task ID is made of, declared before the bytes.
  const digest = formatDigest(await hashFile(file, "sha256"));
  const { c, call } = (await client(config)) as unknown as { c: Client; call: <T>(fn: (opts: object) => Promise<T>, t?: number) => Promise<T> };
  async function* messages(): AsyncGenerator<daemonv1.ImportTaskRequest> {
    const header = create(daemonv1.ImportTaskHeaderSchema, { digest, contentLength: BigInt(st.size), ...h });
    yield create(daemonv1.ImportTaskRequestSchema, { part: { case: "header", value: header } });
    // A file changed since it was hashed fails the daemon's check.
    for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) {
      yield create(daemonv1.ImportTaskRequestSchema, { part: { case: "data", value: chunk as Buffer } });
    }
  }
  const res = await call((opts) => c.importTask(messages(), { ...opts, signal: io.signal }), 0);
  io.stdout.write(`${res.taskId}\n`);
  const placed = res.replicaHosts.length;
  const note = res.alreadyStored ? " (already stored on this daemon)" : "";
  io.stderr.write(
    `imported ${file}: ${formatBytes(BigInt(st.size))}, ${digest}${note}; ${placed} of ${res.replicasWanted} replica(s) placed${placed > 0 ? ` (${res.replicaHosts.join(", ")})` : ""}\n`,
  );
  if (res.warning) io.stderr.write(`warning: ${res.warning}\n`);
}

function checkId(id: string): void {
  if (!isTaskId(id)) throw usage(`${JSON.stringify(id)} is not a task ID (64 lowercase hex digits, as \`damselfly cache import\` prints)`);
}

async function statOf(config: CacheConfig, id: string) {
  const { c, call } = (await client(config)) as unknown as { c: Client; call: <T>(fn: (opts: object) => Promise<T>, t?: number) => Promise<T> };
  const res = await call((opts) => c.statCacheTask({ taskId: id }, opts));
  return { c, call, res };
}

// No digest: nobody we can ask holds an imported task of this ID.
function notFound(id: string, res: daemonv1.StatCacheTaskResponse): DamselflyError {
  if (res.schedulerError && !res.local)
    return new DamselflyError("DF_ERR_SCHEDULER_UNAVAILABLE", `task ${id} is not on this daemon and the scheduler cannot be asked: ${res.schedulerError}`);
  if ((res.local || res.schedulerKnown) && !res.digest)
    return new DamselflyError("DF_ERR_TASK_NOT_FOUND", `task ${id} is not an imported task (use \`damselfly get\`)`);
  return new DamselflyError("DF_ERR_TASK_NOT_FOUND", `no peer holds task ${id}`);
}

export async function cacheExport(config: CacheConfig, id: string, output: string | undefined, io: TransferIo): Promise<void> {
  checkId(id);
  if (!output) throw usage("-O FILE is required");
  const target = await outputTarget(output);
  const { c, call, res } = await statOf(config, id);
  const digest = res.digest;
  if (!digest || !isCacheDigestOf(id, digest)) throw notFound(id, res);
  const run = (delivery: daemonv1.Delivery, write?: Write): Promise<daemonv1.DownloadFinished> =>
    call(async (opts) => {
      const req = create(daemonv1.DownloadTaskRequestSchema, { download: cacheDownload(digest), delivery });
      let done: daemonv1.DownloadFinished | undefined;
      for await (const ev of c.downloadTask(req, { ...opts, signal: io.signal })) {
        if (ev.event.case === "chunk" && write) await write(ev.event.value.data);
        else if (ev.event.case === "finished") done = ev.event.value;
      }
      if (!done) throw new DamselflyError("DF_ERR_INTERNAL", "the daemon ended the download without finishing it");
      return done;
    }, 0);
  // The daemon keeps the task in its store (checked against the digest
  // before it is done) and the output is a copy of its file; when that file
  // is out of reach (another host, another user), the task is streamed.
  let finished = await run(daemonv1.Delivery.STORE_PATH);
  const vouched = finished.digest === digest;
  const check = vouched ? undefined : parseDigest(digest);
  const streamed = async (write: Write) => void (finished = await run(daemonv1.Delivery.STREAM, write));
  if (target.kind === "into")
    await writeInto(target.path, check, async (write) => {
      if (!(await readStoreFile(finished.storePath, write))) await streamed(write);
    });
  else
    await placeOutput(target.path, check, async (tmp) => {
      if (finished.storePath && (await copyStoreFile(finished.storePath, tmp))) return;
      const fh = await open(tmp, "wx", 0o644);
      try {
        await streamed(async (data) => {
          for (let done = 0; done < data.length; ) done += (await fh.write(data, done)).bytesWritten;
        });
      } finally {
        await fh.close();
      }
    });
  const f = finished;
  io.stderr.write(
    `exported ${id} to ${output}: ${formatBytes(f.contentLength)} (${formatBytes(f.bytesFromPeers)} from peers, ${formatBytes(f.bytesLocal)} local), ${digest}\n`,
  );
}

export async function cacheStat(config: CacheConfig, id: string, json: boolean, io: TransferIo): Promise<void> {
  checkId(id);
  const { res } = await statOf(config, id);
  const l = res.local;
  if (!l && res.holders === 0) throw notFound(id, res);
  if (json) {
    const local = l
      ? { state: l.state, contentLength: Number(l.contentLength), totalPieces: l.totalPieces, finishedPieces: l.finishedPieces, diskBytes: Number(l.diskBytes) }
      : null;
    const out = {
      taskId: id,
      digest: res.digest || null,
      local,
      holders: res.schedulerKnown ? res.holders : null,
      peers: res.schedulerKnown ? res.peers : null,
    };
    io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const lines = [`task:    ${id}`, `digest:  ${res.digest || "unknown"}`];
  lines.push(
    l
      ? `local:   ${l.state}, ${formatBytes(l.contentLength)}, ${l.finishedPieces}/${l.totalPieces} pieces, ${formatBytes(l.diskBytes)} on disk`
      : "local:   not stored on this daemon",
  );
  if (res.schedulerKnown) lines.push(`cluster: ${res.holders} peer(s) hold it complete, ${res.peers} peer(s) in all`);
  else lines.push(`cluster: ${res.schedulerError ? `unknown (${res.schedulerError})` : "the scheduler does not know it"}`);
  io.stdout.write(`${lines.join("\n")}\n`);
}
