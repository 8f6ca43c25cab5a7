// The links that talk to the scheduler or from it, with TLS: each client
// checks the server's role before anything (a trigger's credentials, the
// cluster token, a host announcement) leaves.
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { create } from "@bufbuild/protobuf";
import { loadConfig } from "../../src/common/config.js";
import { createLogger } from "../../src/common/logger.js";
import { schedulerSchema } from "../../src/common/schemas.js";
import type { Role } from "../../src/common/tls/roles.js";
import { SchedulerLink } from "../../src/peer/download/scheduler-link.js";
import { CLUSTER_TOKEN_HEADER, createRpcServer, daemonv1, HostType, schedulerv1 } from "../../src/protocol/index.js";
import { DaemonClients } from "../../src/scheduler/daemon-clients.js";
import { ManagerLink } from "../../src/scheduler/manager-link.js";
import { Host } from "../../src/scheduler/resources/host-manager.js";
import { ResourceStore } from "../../src/scheduler/resources/resource-store.js";
import { SeedTriggerClient } from "../../src/scheduler/scheduling/seed-trigger.js";
import { fileScope, identityOf, newTaskId, startTlsScheduler } from "../helpers/scheduler-tls.js";

const { cleanups, pki: pkiReady } = fileScope("df-sched-links-");

async function tlsOf(role: Role, name: string, opts?: { ips?: string[]; dns?: string[] }) {
  const id = identityOf(await (await pkiReady).issue(role, name, opts));
  cleanups.push(() => id.close());
  return id;
}

// A daemon API with a certificate of `role` that records what reaches it.
async function fakeDaemon(role: Role, name: string) {
  const calls: { method: string; token: string | null; authorization?: string }[] = [];
  const server = await createRpcServer(
    "127.0.0.1:0",
    (router) =>
      router.service(daemonv1.DaemonService, {
        triggerTask: (req, ctx) => {
          calls.push({ method: "trigger", token: ctx.requestHeader.get(CLUSTER_TOKEN_HEADER), authorization: req.download?.headers.authorization });
          return create(daemonv1.TriggerTaskResponseSchema, { taskId: req.taskId });
        },
        deleteTask: (_req, ctx) => {
          calls.push({ method: "delete", token: ctx.requestHeader.get(CLUSTER_TOKEN_HEADER) });
          return create(daemonv1.DeleteTaskResponseSchema, {});
        },
      }),
    [],
    { tls: await tlsOf(role, name) },
  );
  cleanups.push(() => server.close());
  const host = new Host(`h-${name}`);
  host.ip = "127.0.0.1";
  host.apiPort = server.address.port;
  return { calls, host };
}

test("scheduler -> daemon: a trigger (with the requester's credentials) goes only to a seed-peer; jobs to a peer or seed-peer", {
  timeout: 20_000,
}, async () => {
  const clients = new DaemonClients(await tlsOf("scheduler", "sched"));
  const trigger = new SeedTriggerClient(clients, 5_000).trigger;
  const download = create(daemonv1.TriggerTaskRequestSchema, { download: { url: "http://origin.test/x", headers: { authorization: "secret" } } }).download!;
  const seed = await fakeDaemon("seed-peer", "seed");
  const peer = await fakeDaemon("peer", "peer");
  const client = await fakeDaemon("client", "cli");
  await trigger(seed.host, download, newTaskId());
  assert.deepEqual(seed.calls, [{ method: "trigger", token: null, authorization: "secret" }]);
  // A peer (say, one that won the rendezvous hash by lying) never sees it.
  await assert.rejects(trigger(peer.host, download, newTaskId()));
  assert.deepEqual(peer.calls, []);
  // A task job (with the cluster token) to a peer; never to another role.
  await clients.get(peer.host).deleteTask({ taskId: newTaskId() }, { headers: { [CLUSTER_TOKEN_HEADER]: "tok" } });
  assert.deepEqual(peer.calls, [{ method: "delete", token: "tok" }]);
  await assert.rejects(clients.get(client.host).deleteTask({ taskId: newTaskId() }, { headers: { [CLUSTER_TOKEN_HEADER]: "tok" } }));
  assert.deepEqual(client.calls, []);
});

// An HTTPS server with a certificate of `role` counting the requests (and
// cluster tokens) that reach it.
async function fakeManager(role: Role, name: string, opts?: { ips?: string[]; dns?: string[] }) {
  const tokens: (string | undefined)[] = [];
  const server = https.createServer((await tlsOf(role, name, opts)).serverOptions(), (req, res) => {
    tokens.push(req.headers[CLUSTER_TOKEN_HEADER] as string | undefined);
    res.writeHead(503).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { tokens, port: (server.address() as { port: number }).port };
}

test("scheduler -> manager: the cluster token goes only to a manager certificate that names the address", { timeout: 20_000 }, async () => {
  const tls = await tlsOf("scheduler", "sched");
  const run = async (port: number) => {
    const config = loadConfig(schedulerSchema, { envPrefix: "SCHEDULER", flags: { listen: "127.0.0.1:0", "manager.url": `http://127.0.0.1:${port}` } });
    const link = new ManagerLink({
      config,
      logger: createLogger("silent"),
      store: new ResourceStore(),
      address: { host: "127.0.0.1", port: 1 },
      apply: () => undefined,
      clusterToken: "tok",
      tls,
    });
    link.start();
    await link.close();
  };
  const impostor = await fakeManager("peer", "impostor");
  const elsewhere = await fakeManager("manager", "elsewhere", { ips: ["127.0.0.9"], dns: ["elsewhere.test"] });
  const manager = await fakeManager("manager", "manager");
  await run(impostor.port);
  await run(elsewhere.port);
  await run(manager.port);
  assert.deepEqual(impostor.tokens, []);
  assert.deepEqual(elsewhere.tokens, []);
  assert.ok(manager.tokens.length > 0 && manager.tokens.every((t) => t === "tok"));
});

test("daemon -> scheduler: announces only to a scheduler certificate that names the configured address", { timeout: 20_000 }, async () => {
  const pki = await pkiReady;
  const s = await startTlsScheduler(pki, cleanups);
  const tls = await tlsOf("peer", "link-node");
  const link = (port: number) => {
    const l = new SchedulerLink({
      addresses: [`127.0.0.1:${port}`],
      host: create(schedulerv1.HostSchema, { id: "h-link", hostname: "link-node", ip: "127.0.0.1", uploadPort: 1, type: HostType.NORMAL }),
      logger: createLogger("silent"),
      connectTimeoutMs: 3_000,
      intervalMs: 60_000,
      cachedTasks: () => [],
      tls,
    });
    cleanups.push(() => l.close());
    return l;
  };
  const real = link(s.port);
  await real.start();
  assert.equal(real.reachable, true);
  // Servers of another role, or a scheduler certificate for another address.
  const servers: [Role, string, { ips: string[]; dns: string[] } | undefined][] = [
    ["peer", "fake-sched", undefined],
    ["scheduler", "far-sched", { ips: ["127.0.0.9"], dns: ["far.test"] }],
  ];
  for (const [role, name, opts] of servers) {
    const announced: string[] = [];
    const server = await createRpcServer(
      "127.0.0.1:0",
      (router) =>
        router.service(schedulerv1.SchedulerService, {
          announceHost: (req) => {
            announced.push(req.host?.id ?? "");
            return create(schedulerv1.AnnounceHostResponseSchema, { newHost: true });
          },
        }),
      [],
      { tls: await tlsOf(role, name, opts) },
    );
    cleanups.push(() => server.close());
    const l = link(server.address.port);
    await l.start();
    assert.equal(l.reachable, false, name);
    assert.deepEqual(announced, [], name);
  }
});
