// `get -O PATH` where something is at PATH already, as `curl -o` and
// `wget -O` treat it: a device or FIFO is written into (never replaced: `-O
// /dev/null` once replaced the machine's /dev/null with a regular file), a
// symbolic link is followed and stays a link, a regular file is replaced
// atomically, a directory or a socket is an error that leaves it alone.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, createReadStream, linkSync, lstatSync, openSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { ExitCode } from "../../src/common/errors.js";
import { startCluster, type DaemonHandle } from "../helpers/cluster.js";
import type { Cleanup } from "../helpers/procs.js";
import { sha256Hex, startOrigin, type Origin } from "../helpers/origin.js";
import { sha256File, tempDir } from "../helpers/store.js";

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

describe("get -O onto an existing path", { timeout: 120_000 }, () => {
  const fns: (() => unknown)[] = [];
  const cleanup: Cleanup = { after: (fn) => void fns.push(fn) };
  let origin: Origin;
  let peer: DaemonHandle;
  let data: Buffer;
  let url = "";
  let dir = "";
  const digest = () => `sha256:${sha256Hex(data)}`;
  const get = (out: string, extra: string[] = []) => peer.get([url, "-O", out, "--no-progress", ...extra], { timeoutMs: 60_000 });

  before(async () => {
    origin = await startOrigin();
    fns.push(() => origin.close());
    data = origin.addRandomFile("/out/blob.bin", 5 * MiB + 11, "output-targets");
    url = origin.url("/out/blob.bin");
    const cluster = await startCluster({ peers: 1, seed: false, t: cleanup });
    peer = cluster.peers[0]!;
    dir = tempDir(cleanup, "damselfly-out-");
  });
  after(async () => {
    for (const fn of fns.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  });

  test("a character device is written into and stays a device", { skip: !isRoot && "mknod needs root" }, async () => {
    // The machine's own /dev/null is not risked: a node of the same device.
    const devNull = join(dir, "null");
    execFileSync("mknod", ["-m", "666", devNull, "c", "1", "3"]);
    for (const extra of [[], ["--digest", digest()]]) {
      const r = await get(devNull, extra);
      assert.equal(r.code, 0, r.stderr);
      const st = lstatSync(devNull);
      assert.ok(st.isCharacterDevice(), `${devNull} is no longer a character device (mode ${st.mode.toString(8)})`);
      assert.equal(st.rdev, lstatSync("/dev/null").rdev);
    }
  });

  test("a FIFO gets the bytes and stays a FIFO", async () => {
    const fifo = join(dir, "pipe");
    execFileSync("mkfifo", [fifo]);
    // A second name for the FIFO: if get replaced the first, a writer on this
    // one still releases the reader (else it would wait forever).
    const spare = join(dir, "pipe-spare");
    linkSync(fifo, spare);
    const chunks: Buffer[] = [];
    const read = new Promise<void>((resolve, reject) => {
      createReadStream(fifo)
        .on("data", (b) => chunks.push(b as Buffer))
        .on("end", resolve)
        .on("error", reject);
    });
    const r = await get(fifo, ["--digest", digest()]);
    const stillFifo = lstatSync(fifo).isFIFO();
    if (!stillFifo) closeSync(openSync(spare, "w"));
    await read;
    assert.ok(stillFifo, `${fifo} is no longer a FIFO`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256Hex(Buffer.concat(chunks)), sha256Hex(data), `the FIFO's reader got ${Buffer.concat(chunks).length} bytes`);
  });

  test("a symbolic link is followed and stays a link", async () => {
    const target = join(dir, "target.bin");
    const link = join(dir, "link.bin");
    writeFileSync(target, "old content");
    symlinkSync("target.bin", link);
    const r = await get(link);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), `${link} is no longer a symbolic link`);
    assert.equal(readlinkSync(link), "target.bin");
    assert.equal(await sha256File(target), sha256Hex(data));

    // A dangling link: its target is created.
    const dangling = join(dir, "dangling.bin");
    symlinkSync("created.bin", dangling);
    const r2 = await get(dangling);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(lstatSync(dangling).isSymbolicLink());
    assert.equal(await sha256File(join(dir, "created.bin")), sha256Hex(data));
  });

  test("a directory or a socket is an error and is left as it was", async () => {
    const sub = join(dir, "subdir");
    mkdirSync(sub);
    symlinkSync("subdir", join(dir, "subdir-link"));
    const server = net.createServer();
    const sock = join(dir, "sock");
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      for (const [out, why] of [
        [sub, /is a directory/],
        [join(dir, "subdir-link"), /is a directory/],
        [sock, /is a socket/],
      ] as const) {
        const r = await get(out);
        assert.equal(r.code, ExitCode.STORAGE, `${out}: ${r.stderr}`);
        assert.match(r.stderr, /DF_ERR_OUTPUT/);
        assert.match(r.stderr, why);
      }
      assert.ok(lstatSync(sub).isDirectory());
      assert.ok(lstatSync(join(dir, "subdir-link")).isSymbolicLink());
      assert.ok(lstatSync(sock).isSocket());
    } finally {
      server.close();
    }
  });

  test("a regular file is replaced whole", async () => {
    const file = join(dir, "file.bin");
    writeFileSync(file, Buffer.alloc(10 * MiB, 1));
    const r = await get(file, ["--digest", digest()]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(file).isFile());
    assert.equal(sha256Hex(readFileSync(file)), sha256Hex(data));
  });
});
