// Answers that must fit in memory are read up to a bound: a hostile or
// broken store sending an endless listing gets a clear error, not our RAM.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { listS3Prefix } from "../../src/common/s3/s3-list.js";

test("an S3 listing page that never ends is refused after 16 MiB, and the stream is dropped", async () => {
  let sent = 0;
  const srv = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/xml" });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    // Bounded: stops by itself after 64 MiB if the client never hangs up.
    const pump = () => {
      while (sent < 64 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    res.on("close", () => (sent = Number.POSITIVE_INFINITY));
    pump();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const endpoint = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const env = { AWS_ACCESS_KEY_ID: "AKID", AWS_SECRET_ACCESS_KEY: "secret", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
    await assert.rejects(listS3Prefix("b", "p/", { endpoint, region: "", pathStyle: true }, 100, env), (e: Error & { code?: string }) => {
      assert.equal(e.code, "DF_ERR_SOURCE_PROTOCOL");
      return true;
    });
  } finally {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
