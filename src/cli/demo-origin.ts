// A small origin for `damselfly up`, so the printed example works on a
// machine with no other server: GET/HEAD /demo.bin serves DEMO_SIZE
// deterministic pseudo-random bytes (AES-128-CTR keystream), with Range
// support, generated as they are sent rather than held in memory.
import http from "node:http";
import { createCipheriv, createHash } from "node:crypto";
import { formatHostPort, type HostPort } from "../common/address.js";
import { closeServer, listenOn } from "../common/http-server.js";

export const DEMO_SIZE = 256 * 1024 * 1024;
export const DEMO_PATH = "/demo.bin";
const KEY = createHash("sha256").update("damselfly demo").digest().subarray(0, 16);
const CHUNK = 1024 * 1024;

// The keystream from byte `start` on: CTR mode seeks by setting the counter.
function* keystream(start: number, end: number): Generator<Buffer> {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(Math.floor(start / 16)), 8);
  const cipher = createCipheriv("aes-128-ctr", KEY, iv);
  const zeros = Buffer.alloc(CHUNK + 16);
  let skip = start % 16;
  for (let pos = start; pos < end; ) {
    const n = Math.min(CHUNK, end - pos);
    const out = cipher.update(zeros.subarray(0, n + skip)).subarray(skip);
    skip = 0;
    pos += n;
    yield out;
  }
}

export function demoDigest(): string {
  const h = createHash("sha256");
  for (const chunk of keystream(0, DEMO_SIZE)) h.update(chunk);
  return `sha256:${h.digest("hex")}`;
}

export interface DemoOrigin {
  address: HostPort;
  close(): Promise<void>;
}

export async function startDemoOrigin(host: string, port: number): Promise<DemoOrigin> {
  const server = http.createServer((req, res) => {
    if ((req.method !== "GET" && req.method !== "HEAD") || req.url !== DEMO_PATH) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    let start = 0;
    let end = DEMO_SIZE;
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    if (m && (m[1] || m[2])) {
      start = m[1] ? Number(m[1]) : Math.max(0, DEMO_SIZE - Number(m[2]));
      end = m[1] && m[2] ? Math.min(DEMO_SIZE, Number(m[2]) + 1) : DEMO_SIZE;
      if (start >= end) {
        res.writeHead(416, { "content-range": `bytes */${DEMO_SIZE}` }).end();
        return;
      }
      res.writeHead(206, { "content-length": end - start, "content-range": `bytes ${start}-${end - 1}/${DEMO_SIZE}`, "accept-ranges": "bytes" });
    } else {
      res.writeHead(200, { "content-length": DEMO_SIZE, "accept-ranges": "bytes", "content-type": "application/octet-stream" });
    }
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const chunks = keystream(start, end);
    const pump = (): void => {
      for (;;) {
        const next = chunks.next();
        if (next.done) {
          res.end();
          return;
        }
        if (!res.write(next.value)) {
          res.once("drain", pump);
          return;
        }
      }
    };
    res.on("close", () => chunks.return(undefined));
    pump();
  });
  const address = await listenOn(server, formatHostPort({ host, port }), "demo origin address");
  return { address, close: () => closeServer(server) };
}
