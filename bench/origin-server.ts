// The benchmarks' origin: the tests' origin (test/helpers/origin.ts) serving
// one file from disk with Range support and counting the bytes it sent. Run
// as its own process so it does not share an event loop with what is
// measured.
//   node dist/bench/origin-server.js FILE [HOST:PORT]
// Prints "listening http://HOST:PORT/<name>" and, on SIGUSR2, "sent <bytes>".
// `/<name>?prefix=N` is another resource: the file's first N bytes (the
// testbed's warm-up downloads).
import { basename } from "node:path";
import { startOrigin } from "../test/helpers/origin.js";

const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: origin-server FILE [HOST:PORT]\n");
  process.exit(2);
}
const [host, port] = (process.argv[3] ?? "127.0.0.1:0").split(":");
const path = `/${basename(file)}`;
const origin = await startOrigin({ host, port: Number(port), recordRequests: false });
const url = origin.addDiskFile(path, file, { prefixQuery: true });
process.stdout.write(`listening ${url}\n`);
process.on("SIGUSR2", () => process.stdout.write(`sent ${origin.bytesSent(path)}\n`));
process.on("SIGTERM", () => process.exit(0));
