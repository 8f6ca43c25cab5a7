// Where the proxy relays to (ProxyPolicy), with a fake resolver and fake
// interface addresses: nothing here connects anywhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EgressPolicy, type Lookup } from "../../src/common/egress.js";
import { ProxyPolicy } from "../../src/peer/proxy/proxy-policy.js";

const DNS: Record<string, string[]> = {
  localhost: ["127.0.0.1"],
  "registry.local": ["10.9.9.9"],
  "rebind.example": ["127.0.0.1"],
  "both.example": ["127.0.0.1", "203.0.113.7"],
  "meta.example": ["169.254.169.254"],
};
const resolve: Lookup = (host, _o, cb) => {
  const addrs = DNS[host];
  if (!addrs) return cb(Object.assign(new Error(`ENOTFOUND ${host}`), { code: "ENOTFOUND" }), []);
  cb(
    null,
    addrs.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })),
  );
};

function policy(o: { allowLocal?: string[]; registries?: string[] } = {}): ProxyPolicy {
  return new ProxyPolicy({
    egress: new EgressPolicy({ allow: [], deny: [] }, resolve),
    connectPorts: ["443"],
    ports: ["80", "443", "1025-65535"],
    allowLocal: o.allowLocal ?? [],
    registries: o.registries ?? [],
    ownAddresses: () => ["127.0.0.1", "::1", "10.9.9.9"],
  });
}

const code = async (p: Promise<unknown>) =>
  p.then(
    () => "allowed",
    (e: { code?: string }) => e.code,
  );

test("loopback and this node's own addresses are denied unless listed, by address or by the name the operator gave", async () => {
  const p = policy({ allowLocal: ["10.9.9.9:8080", "127.0.0.1:5000-5001"], registries: ["localhost:6000", "https://index.docker.io"] });
  assert.equal(await code(p.resolve("203.0.113.1", 443)), "allowed");
  assert.equal(await code(p.resolve("127.0.0.1", 65000)), "DF_ERR_PROXY_DENIED");
  assert.equal(await code(p.resolve("127.0.0.2", 80)), "DF_ERR_PROXY_DENIED", "all of 127/8");
  assert.equal(await code(p.resolve("[::1]", 8080)), "DF_ERR_PROXY_DENIED");
  assert.equal(await code(p.resolve("::ffff:127.0.0.1", 80)), "DF_ERR_PROXY_DENIED", "a mapped loopback address");
  assert.equal(await code(p.resolve("[::ffff:7f00:1]", 80)), "DF_ERR_PROXY_DENIED", "the same, in hex");
  assert.equal(await code(p.resolve("0:0:0:0:0:0:0:1", 80)), "DF_ERR_PROXY_DENIED", "::1 spelt out");
  assert.equal(await code(p.resolve("registry.local", 8081)), "DF_ERR_PROXY_DENIED", "an own address on another port");
  assert.equal(await p.resolve("registry.local", 8080), "10.9.9.9");
  assert.equal(await p.resolve("127.0.0.1", 5001), "127.0.0.1");
  assert.equal(await p.resolve("localhost", 6000), "127.0.0.1", "a registry of the config, by its name");
  assert.equal(await code(p.resolve("rebind.example", 6000)), "DF_ERR_PROXY_DENIED", "another name for the same address");
  assert.equal(await p.resolve("both.example", 443), "203.0.113.7", "the first address that passes");
  assert.equal(await code(p.resolve("meta.example", 80)), "DF_ERR_EGRESS_DENIED", "the egress policy first");
});

test("CONNECT ports, request ports and methods", () => {
  const p = policy();
  assert.doesNotThrow(() => p.checkConnectPort(443));
  assert.throws(() => p.checkConnectPort(22), { code: "DF_ERR_PROXY_DENIED" });
  assert.doesNotThrow(() => p.checkRequest("PUT", new URL("https://r.example/v2/x/blobs/uploads/1")));
  assert.doesNotThrow(() => p.checkRequest("GET", new URL("http://r.example:5000/v2/")));
  assert.throws(() => p.checkRequest("GET", new URL("http://r.example:25/")), { code: "DF_ERR_PROXY_DENIED" });
  assert.throws(() => p.checkRequest("TRACE", new URL("http://r.example/")), { code: "DF_ERR_PROXY_DENIED" });
});
