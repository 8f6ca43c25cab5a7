// test/helpers/k8s-pods.ts, which turns rendered pods into `ctr run`
// invocations for test/integration/k8s-pods-ctr.test.ts: Kubernetes' $(VAR)
// expansion, the env a kubelet builds (downward API, optional Secrets,
// service links) and the ctr arguments of the rendered daemon pod.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { containerEnv, ctrRunArgs, expandK8s, findObject, podUser, renderOverlay, serviceLinkEnv, type PodContext } from "../helpers/k8s-pods.js";

const hasKubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

const ctx: PodContext = { name: "pod-a", namespace: "damselfly", nodeName: "node-1", hostIP: "10.0.0.5", podIP: "10.1.0.9" };

test("$(VAR) expands as Kubernetes expands it: defined names replaced, undefined kept, $$ escapes", () => {
  const vars = { A: "x", B: "$(A)" };
  assert.equal(expandK8s("--a=$(A) --b=$(B) --c=$(C) $$(A) $$", vars), "--a=x --b=$(A) --c=$(C) $(A) $");
});

test("env: fieldRefs resolved, later values expand earlier ones, absent optional Secrets left out, others refused", () => {
  const c = {
    env: [
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { name: "IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
      { name: "WHO", value: "$(POD_NAME)@$(NODE)" },
      { name: "TOKEN", valueFrom: { secretKeyRef: { name: "t", key: "token", optional: true } } },
    ],
  };
  assert.deepEqual(containerEnv(c, { ...ctx, serviceEnv: { S: "1" } }), { S: "1", POD_NAME: "pod-a", NODE: "node-1", IP: "10.0.0.5", WHO: "pod-a@node-1" });
  assert.equal(containerEnv(c, { ...ctx, secrets: { t: { token: "s3" } } })["TOKEN"], "s3");
  assert.throws(() => containerEnv({ env: [{ name: "X", valueFrom: { secretKeyRef: { name: "t", key: "k" } } }] }, ctx), /not optional/);
});

test("service links: one set per Service with a cluster IP, none for headless ones", () => {
  const objs = [
    { kind: "Service", metadata: { name: "damselfly-manager" }, spec: { ports: [{ name: "https", port: 8080 }] } },
    { kind: "Service", metadata: { name: "damselfly-scheduler" }, spec: { clusterIP: "None", ports: [{ port: 8002 }] } },
  ];
  assert.deepEqual(serviceLinkEnv(objs, { "damselfly-manager": "10.96.0.1" }), {
    DAMSELFLY_MANAGER_SERVICE_HOST: "10.96.0.1",
    DAMSELFLY_MANAGER_SERVICE_PORT: "8080",
    DAMSELFLY_MANAGER_SERVICE_PORT_HTTPS: "8080",
    DAMSELFLY_MANAGER_PORT: "tcp://10.96.0.1:8080",
    DAMSELFLY_MANAGER_PORT_8080_TCP: "tcp://10.96.0.1:8080",
    DAMSELFLY_MANAGER_PORT_8080_TCP_PROTO: "tcp",
    DAMSELFLY_MANAGER_PORT_8080_TCP_PORT: "8080",
    DAMSELFLY_MANAGER_PORT_8080_TCP_ADDR: "10.96.0.1",
  });
});

test("the rendered daemon pod becomes ctr run with its args, env, mounts and securityContext", {
  skip: hasKubectl ? false : "kubectl is not installed",
}, () => {
  const spec = findObject(renderOverlay("certs-job"), "DaemonSet", "damselfly-daemon").spec.template.spec;
  const c = spec.containers[0];
  const volumes = { data: "/n/var/lib/damselfly", run: "/n/run/damselfly", tls: "/n/etc/damselfly/tls" };
  const argv = ctrRunArgs(
    spec,
    c,
    ctx,
    { image: "img", id: "d", netnsPath: "/var/run/netns/n1", volumes, logFile: "/l" },
    { entrypoint: ["/ep"], cmd: ["--help"] },
  );
  const at = argv.indexOf("img");
  assert.deepEqual(argv.slice(at, at + 4), ["img", "d", "/ep", "daemon"]);
  assert.ok(argv.includes("--hostname=node-1") && argv.includes("--advertise-ip=10.0.0.5"), argv.join(" "));
  assert.ok(!argv.some((a) => a.includes("$(")), "every $(VAR) is expanded");
  assert.ok(argv.includes("type=bind,src=/n/etc/damselfly/tls,dst=/tls,options=rbind:ro"));
  assert.ok(argv.includes("type=bind,src=/n/var/lib/damselfly,dst=/var/lib/damselfly,options=rbind:rw"));
  assert.ok(argv.includes("--read-only") && !argv.includes("--allow-new-privs"));
  assert.equal(argv.filter((a) => a === "--cap-drop").length, 14);
  assert.ok(argv.includes("network:/var/run/netns/n1"));
  assert.deepEqual(podUser(spec, c), { uid: 0, gid: 0, fsGroup: undefined });
});
