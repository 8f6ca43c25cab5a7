// The proxy CA's leaf cache is bounded: it keeps the 1000 most recently used
// hosts. Issues 1001 leaves (seconds of CPU), so it is not in the unit tier.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pino } from "pino";
import { CertificateAuthority } from "../../src/peer/proxy/ca.js";
import { tempDir } from "../helpers/store.js";

const log = pino({ level: "silent" });

test("the leaf cache keeps the 1000 most recently used hosts", async (t) => {
  const ca = await CertificateAuthority.loadOrCreate({ ...files(tempDir(t, "damselfly-ca-")), logger: log });
  const first = await ca.secureContextFor("h0.example");
  const second = await ca.secureContextFor("h1.example");
  for (let i = 2; i < 1000; i++) await ca.secureContextFor(`h${i}.example`);
  assert.equal(await ca.secureContextFor("h0.example"), first, "touching h0 makes h1 the oldest");
  await ca.secureContextFor("h1000.example");
  assert.equal(await ca.secureContextFor("h0.example"), first);
  assert.notEqual(await ca.secureContextFor("h1.example"), second, "h1 was evicted and issued afresh");
});

function files(dir: string): { certFile: string; keyFile: string } {
  return { certFile: join(dir, "certs", "ca.crt"), keyFile: join(dir, "private", "ca.key") };
}
