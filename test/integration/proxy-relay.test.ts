// The proxy is no open relay: CONNECT only to proxy.connectPorts (443),
// absolute-form and mirror requests only to proxy.ports with the methods an
// HTTP client uses, and never to loopback or this node's own addresses
// (the daemon API, the manager) unless listed in proxy.allowLocal.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { startOrigin, type Origin } from "../helpers/origin.js";
import { loopbackDaemonArgs, spawnDamselfly, type Cleanup } from "../helpers/procs.js";
import { tempDir } from "../helpers/store.js";

interface Daemon {
  proxy: number;
  api: number;
}

async function daemon(t: Cleanup, env: Record<string, string> = {}): Promise<Daemon> {
  const dir = tempDir(t, "df-proxy-relay-");
  const args = ["daemon", ...loopbackDaemonArgs("", join(dir, "data"))];
  const proc = spawnDamselfly(args, { t, env });
  const ready = await proc.waitForLog("daemon ready", 20_000);
  const port = (v: unknown) => Number(String(v).split(":").pop());
  return { proxy: port(ready.proxy), api: port(ready.api) };
}

async function origin(t: Cleanup): Promise<Origin> {
  const o = await startOrigin();
  t.after(() => o.close());
  o.addFile("/file", Buffer.from("origin bytes\n"));
  return o;
}

// One request on a raw connection to the proxy: the answer's status, error
// code and body (up to the connection's end, or the head of a tunnel).
async function exchange(port: number, request: string): Promise<{ status: number; code: string | undefined; body: string }> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => {});
  let text = "";
  const done = new Promise<void>((resolve) => {
    s.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (/^HTTP\/1\.1 200 Connection Established\r\n\r\n/.test(text)) resolve();
    });
    s.once("close", () => resolve());
  });
  s.write(request);
  await done;
  s.destroy();
  const [head = "", body = ""] = text.split("\r\n\r\n");
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), code: /\r\nx-damselfly-error: ([A-Z_]+)/i.exec(head)?.[1], body };
}

const connect = (target: string) => `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`;
const absolute = (method: string, url: string) => `${method} ${url} HTTP/1.1\r\nhost: ${new URL(url).host}\r\nconnection: close\r\n\r\n`;

test("by default the proxy relays nothing to loopback: not the daemon API, not a local origin", { timeout: 60_000 }, async (t) => {
  const o = await origin(t);
  // Every port open to CONNECT: what stops the tunnels is the address.
  const d = await daemon(t, { DAMSELFLY_DAEMON_PROXY_CONNECT_PORTS: "1-65535" });
  const denied = { status: 403, code: "DF_ERR_PROXY_DENIED" };
  const pick = (r: { status: number; code: string | undefined }) => ({ status: r.status, code: r.code });
  assert.deepEqual(pick(await exchange(d.proxy, connect(`127.0.0.1:${d.api}`))), denied, "CONNECT to the daemon API");
  assert.deepEqual(pick(await exchange(d.proxy, connect(`localhost:${o.port}`))), denied, "CONNECT to a local origin by name");
  assert.deepEqual(pick(await exchange(d.proxy, connect(`[::ffff:127.0.0.1]:${o.port}`))), denied, "CONNECT to a mapped loopback address");
  assert.deepEqual(pick(await exchange(d.proxy, absolute("GET", `http://127.0.0.1:${d.api}/`))), denied, "absolute-form to the daemon API");
  assert.deepEqual(pick(await exchange(d.proxy, absolute("POST", o.url("/file")))), denied, "absolute-form to a local origin");
  const mirror = `GET /v2/x/manifests/latest?ns=${encodeURIComponent(`127.0.0.1:${o.port}`)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`;
  assert.deepEqual(pick(await exchange(d.proxy, mirror)), denied, "a mirror request to a local registry");
  assert.equal(o.requestCount(), 0, "nothing reached the local origin");
});

test("CONNECT goes to proxy.connectPorts only, requests to proxy.ports with a client's methods; listed local destinations work", {
  timeout: 60_000,
}, async (t) => {
  const o = await origin(t);
  const d = await daemon(t, { DAMSELFLY_DAEMON_PROXY_ALLOW_LOCAL: `127.0.0.1:${o.port}`, DAMSELFLY_DAEMON_PROXY_CONNECT_PORTS: `443,${o.port}` });
  const ok = await exchange(d.proxy, absolute("GET", o.url("/file")));
  assert.equal(ok.status, 200);
  assert.equal(ok.body, "origin bytes\n");
  assert.equal((await exchange(d.proxy, connect(`127.0.0.1:${o.port}`))).status, 200, "a tunnel to the listed origin");
  const denied = (r: { status: number; code: string | undefined }) => r.status === 403 && r.code === "DF_ERR_PROXY_DENIED";
  assert.ok(denied(await exchange(d.proxy, connect(`127.0.0.1:${d.api}`))), "CONNECT to a port not in connectPorts");
  assert.ok(denied(await exchange(d.proxy, absolute("GET", `http://127.0.0.1:${d.api}/`))), "an unlisted local port");
  assert.ok(denied(await exchange(d.proxy, absolute("GET", "http://example.invalid:25/"))), "a port not in proxy.ports");
  assert.ok(denied(await exchange(d.proxy, absolute("TRACE", o.url("/file")))), "TRACE");
  assert.equal(o.requestCount(), 1, "only the allowed GET reached the origin (and the tunnel, which sent nothing)");
});
