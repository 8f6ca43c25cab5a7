// A plain static origin for benchmarks: serves one file from disk with Range
// support and counts the bytes it sent. Run as its own process so it does not
// share an event loop with what is measured.
//   node dist/bench/origin-server.js FILE [HOST:PORT]
// Prints "listening http://HOST:PORT/<name>" and, on SIGUSR2, "sent <bytes>".
// `/<name>?prefix=N` is another resource: the file's first N bytes (the
// testbed's warm-up downloads).
import http from "node:http";
import { createReadStream, statSync } from "node:fs";
import { basename } from "node:path";

const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: origin-server FILE [HOST:PORT]\n");
  process.exit(2);
}
const [host, port] = (process.argv[3] ?? "127.0.0.1:0").split(":");
const fileSize = statSync(file).size;
let sent = 0;

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://origin");
  const prefix = url.searchParams.get("prefix");
  if (url.pathname !== `/${basename(file)}` || (prefix !== null && !/^\d{1,15}$/.test(prefix)) || [...url.searchParams.keys()].some((k) => k !== "prefix")) {
    res.writeHead(404).end();
    return;
  }
  const size = prefix === null ? fileSize : Math.min(Number(prefix), fileSize);
  let start = 0;
  let end = size - 1;
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  if (m) {
    start = Number(m[1]);
    end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    res.writeHead(206, { "content-length": end - start + 1, "content-range": `bytes ${start}-${end}/${size}`, "accept-ranges": "bytes" });
  } else {
    res.writeHead(200, { "content-length": size, "accept-ranges": "bytes" });
  }
  if (req.method === "HEAD") return res.end();
  const s = createReadStream(file, { start, end, highWaterMark: 1024 * 1024 });
  s.on("data", (c) => (sent += c.length));
  s.pipe(res);
});
server.listen(Number(port), host, () => {
  const a = server.address() as { port: number };
  process.stdout.write(`listening http://${host}:${a.port}/${basename(file)}\n`);
});
process.on("SIGUSR2", () => process.stdout.write(`sent ${sent}\n`));
process.on("SIGTERM", () => process.exit(0));
