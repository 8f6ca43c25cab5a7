// With TLS on, the extender routes answer only a client certificate of the
// cluster CA with role `client` (what kube-scheduler's extender tlsConfig
// shows): a stranger without a certificate gets 401, a certificate of
// another CA 401, a peer's certificate 403, and none of them makes the
// manager look at an image. Real HTTPS over loopback, the manager's server
// options (a client certificate asked for, not required).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { Agent, request } from "undici";
import { createLogger } from "../../src/common/logger.js";
import { TlsIdentity } from "../../src/common/tls/identity.js";
import { EMPTY_LOCALITY, type LocalitySource } from "../../src/manager/extender/locality.js";
import { installErrorHandlers } from "../../src/manager/http/errors.js";
import { extenderRoutes } from "../../src/manager/routes/extender.js";
import { makePki, type CertFiles } from "../helpers/pki.js";

const wanted: string[][] = [];
const locality: LocalitySource = { current: EMPTY_LOCALITY.current, wanted: (images) => void wanted.push([...images]) };
const body = JSON.stringify({ Pod: { spec: { containers: [{ image: "evil.example/app:1" }] } }, NodeNames: ["node-a"] });

let app: FastifyInstance;
let dir: string;
let url: string;
let ca: Buffer;
const files: Record<string, CertFiles> = {};
const agents: Agent[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "dfm-ext-tls-"));
  const pki = await makePki(dir);
  const other = await makePki(join(dir, "other"));
  files.manager = await pki.issue("manager", "manager");
  files.client = await pki.issue("client", "kube-scheduler");
  files.peer = await pki.issue("peer", "node-a");
  files.otherClient = await other.issue("client", "kube-scheduler");
  ca = readFileSync(files.manager.ca);
  const tls = TlsIdentity.load(files.manager, { watch: false });
  app = Fastify({ logger: false, https: tls.serverOptions(false) });
  installErrorHandlers(app, createLogger("fatal", join(tmpdir(), "dfm-extender-tls-test.log")));
  await app.register(extenderRoutes(locality, { requireClientCert: true }));
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  url = `https://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
after(async () => {
  for (const a of agents) await a.close();
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(verb: string, cert?: CertFiles) {
  const agent = new Agent({ connect: { ca, servername: "localhost", ...(cert ? { cert: readFileSync(cert.cert), key: readFileSync(cert.key) } : {}) } });
  agents.push(agent);
  const r = await request(`${url}/extender/v1/${verb}`, { method: "POST", dispatcher: agent, headers: { "content-type": "application/json" }, body });
  return { status: r.statusCode, body: (await r.body.json()) as { code?: string } };
}

test("no client certificate, or one of another CA: 401, the pod's images never looked at", async () => {
  for (const verb of ["prioritize", "filter"]) {
    for (const cert of [undefined, files.otherClient]) {
      const r = await post(verb, cert);
      assert.equal(r.status, 401, `${verb} ${cert ? "other CA" : "no cert"}`);
      assert.equal(r.body.code, "DF_ERR_UNAUTHENTICATED");
    }
  }
  assert.deepEqual(wanted, []);
});

test("a certificate of the CA with another role (a peer's): 403", async () => {
  const r = await post("prioritize", files.peer);
  assert.equal(r.status, 403);
  assert.equal(r.body.code, "DF_ERR_PERMISSION_DENIED");
  assert.deepEqual(wanted, []);
});

test("kube-scheduler's client certificate: answered", async () => {
  const p = await post("prioritize", files.client);
  assert.equal(p.status, 200);
  assert.deepEqual(p.body, [{ Host: "node-a", Score: 0 }]);
  const f = await post("filter", files.client);
  assert.equal(f.status, 200);
  assert.deepEqual(wanted, [["evil.example/app:1"], ["evil.example/app:1"]]);
});
