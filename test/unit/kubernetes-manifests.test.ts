// deploy/kubernetes: every overlay renders with `kubectl kustomize`, and what
// it renders is consistent: each damselfly container's args are flags its
// command accepts (parsed by the CLI's own program), its DAMSELFLY_* env names
// are keys of the command's schema, Services, StatefulSets and PDBs select
// pods that exist, probes and targetPorts name declared ports, mounts name
// volumes, and certificates carry exactly one role URI of the zero-trust roles.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { parseAllDocuments } from "yaml";
import { buildProgram } from "../../src/cli/main.js";
import { envName, fieldsOf, type Schema } from "../../src/common/config.js";
import { daemonSchema, managerSchema, schedulerSchema } from "../../src/common/schemas.js";
import { loadCommandConfig } from "../../src/cli/options.js";
import { ROLES, ROLE_URI_PREFIX } from "../../src/common/tls/roles.js";
import { REPO_ROOT } from "../helpers/procs.js";

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are untyped JSON
type Obj = any;

const OVERLAYS_DIR = join(REPO_ROOT, "deploy", "kubernetes", "overlays");
const REQUIRED_OVERLAYS = ["default", "postgres", "certs-job", "networkpolicy", "servicemonitor"];
const NAMESPACE = "damselfly";
const CLUSTER_SCOPED = new Set([
  "Namespace",
  "ClusterRole",
  "ClusterRoleBinding",
  "ClusterIssuer",
  "ValidatingAdmissionPolicy",
  "ValidatingAdmissionPolicyBinding",
]);
const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job"]);
const ENV_PREFIX: Record<string, [string, Schema]> = {
  daemon: ["DAEMON", daemonSchema],
  scheduler: ["SCHEDULER", schedulerSchema],
  manager: ["MANAGER", managerSchema],
};

const hasKubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;
if (!hasKubectl && process.env["DAMSELFLY_REQUIRE_KUBECTL"] === "1") throw new Error("the Kubernetes manifest tests are required but kubectl is not installed");
const SKIP = hasKubectl ? false : "kubectl is not installed: the Kubernetes manifests are not rendered";

function render(overlay: string): Obj[] {
  const r = spawnSync("kubectl", ["kustomize", join(OVERLAYS_DIR, overlay)], { encoding: "utf8", maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `kubectl kustomize ${overlay}: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS())
    .filter((o) => o != null);
}

function podSpec(o: Obj): Obj {
  return o.spec.template.spec;
}

function isSubset(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

// The command a container's args run, e.g. ["certs", "issue"], and the rest.
function commandOf(program: Command, args: string[]): [Command, string[], string[]] {
  let cmd = program;
  const path: string[] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const sub = cmd.commands.find((c) => c.name() === args[i]);
    if (!sub) break;
    cmd = sub;
    path.push(args[i]);
  }
  return [cmd, path, args.slice(i)];
}

function acceptedEnv(command: string): Set<string> {
  const entry = ENV_PREFIX[command];
  if (!entry) return new Set();
  const [prefix, schema] = entry;
  const names = new Set<string>();
  for (const e of fieldsOf(schema)) {
    if (e.field.envOnly) names.add(e.field.envOnly);
    else names.add(envName(prefix, e.path));
  }
  return names;
}

// Every damselfly container: args parse with no unknown option or stray
// operand, $(VAR) references are defined, DAMSELFLY_* env names exist.
function checkDamselflyContainer(program: Command, where: string, c: Obj): string {
  const args: string[] = c.args ?? [];
  const [cmd, path, rest] = commandOf(program, args);
  assert.ok(path.length > 0, `${where}: args do not start with a damselfly command: ${args.join(" ")}`);
  assert.equal(cmd.commands.length, 0, `${where}: "${path.join(" ")}" needs a subcommand`);
  const { operands, unknown } = cmd.parseOptions(rest);
  assert.deepEqual(unknown, [], `${where}: damselfly ${path.join(" ")} does not accept ${unknown.join(" ")}`);
  assert.deepEqual(operands, [], `${where}: stray operands ${operands.join(" ")}`);
  const env = new Set<string>((c.env ?? []).map((e: Obj) => e.name));
  for (const a of args) {
    for (const m of a.matchAll(/\$\(([A-Z_]+)\)/g)) assert.ok(env.has(m[1]), `${where}: $(${m[1]}) is not in env`);
  }
  const accepted = acceptedEnv(path[0]);
  for (const name of env) {
    if (name.startsWith("DAMSELFLY_")) assert.ok(accepted.has(name), `${where}: ${name} is no key of damselfly ${path[0]}`);
  }
  return path.join(" ");
}

// What the kubelet puts in $(VAR) and the Secrets in env, for loading a config.
const SAMPLE: Record<string, string> = { POD_IP: "10.0.0.5", NODE_IP: "10.0.0.6", POD_NAME: "damselfly-x-0", NODE_NAME: "node-1" };
const SAMPLE_SECRET: Record<string, string> = { DAMSELFLY_MANAGER_DATABASE_URL: "postgres://u:p@db:5432/damselfly" };

// A server's args and env load into a valid config (values too, not only
// names), and every server runs with mutual TLS, never --insecure.
async function checkServerConfig(where: string, c: Obj): Promise<void> {
  const args = (c.args as string[]).map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_, v: string) => SAMPLE[v] ?? v));
  const entry = ENV_PREFIX[args[0]];
  if (!entry) return;
  const [cmd, , rest] = commandOf(await buildProgram(), args);
  cmd.parseOptions(rest);
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.name.startsWith("DAMSELFLY_")) env[e.name] = e.value ?? SAMPLE_SECRET[e.name] ?? "a-secret-from-a-kubernetes-secret";
  }
  let cfg: Obj;
  try {
    cfg = loadCommandConfig(cmd, entry[1], entry[0], { env });
  } catch (err) {
    assert.fail(`${where}: damselfly ${args[0]} refuses its config: ${(err as Error).message}`);
  }
  assert.ok(cfg.tls.ca && cfg.tls.cert && cfg.tls.key, `${where}: runs without TLS`);
  assert.equal(cfg.insecure, false, `${where}: --insecure`);
}

function checkPorts(where: string, c: Obj): void {
  const ports = new Set<string>((c.ports ?? []).map((p: Obj) => p.name));
  for (const kind of ["livenessProbe", "readinessProbe", "startupProbe"]) {
    const port = c[kind]?.httpGet?.port;
    if (typeof port === "string") assert.ok(ports.has(port), `${where}: ${kind} names port ${port}, not declared`);
  }
}

function checkWorkload(program: Command, o: Obj, commands: Map<string, [string, Obj]>): void {
  const where = `${o.kind}/${o.metadata.name}`;
  const spec = podSpec(o);
  const labels = o.spec.template.metadata?.labels;
  if (o.kind !== "Job") {
    assert.ok(isSubset(o.spec.selector.matchLabels, labels), `${where}: selector does not match its pod labels`);
  }
  const volumes = new Set<string>([...(spec.volumes ?? []).map((v: Obj) => v.name), ...(o.spec.volumeClaimTemplates ?? []).map((v: Obj) => v.metadata.name)]);
  for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
    const cw = `${where} container ${c.name}`;
    assert.match(c.image ?? "", /[:@]/, `${cw}: image ${c.image} has no tag (an images: entry missed it)`);
    for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${cw}: mounts ${m.name}, no such volume`);
    checkPorts(cw, c);
    if (/^damselfly(:|@|$)/.test(c.image)) commands.set(cw, [checkDamselflyContainer(program, cw, c), c]);
  }
}

function checkServicesAndBudgets(objs: Obj[]): void {
  const workloads = objs.filter((o) => WORKLOADS.has(o.kind) && o.kind !== "Job");
  const podsOf = (sel: Record<string, string>) => workloads.filter((w) => isSubset(sel, w.spec.template.metadata?.labels));
  for (const s of objs.filter((o) => o.kind === "Service")) {
    const pods = podsOf(s.spec.selector ?? {});
    assert.ok(pods.length > 0, `Service/${s.metadata.name} selects no workload`);
    const names = new Set(pods.flatMap((w) => podSpec(w).containers.flatMap((c: Obj) => (c.ports ?? []).map((p: Obj) => p.name))));
    for (const p of s.spec.ports) {
      if (typeof p.targetPort === "string") assert.ok(names.has(p.targetPort), `Service/${s.metadata.name}: no port ${p.targetPort}`);
    }
  }
  for (const p of objs.filter((o) => o.kind === "PodDisruptionBudget")) {
    assert.ok(podsOf(p.spec.selector.matchLabels).length > 0, `PodDisruptionBudget/${p.metadata.name} selects no workload`);
  }
  for (const n of objs.filter((o) => o.kind === "NetworkPolicy")) {
    const pods = podsOf(n.spec.podSelector.matchLabels ?? {});
    assert.ok(pods.length > 0, `NetworkPolicy/${n.metadata.name} selects no workload`);
    const names = new Set(pods.flatMap((w) => podSpec(w).containers.flatMap((c: Obj) => (c.ports ?? []).map((p: Obj) => p.name))));
    for (const rule of n.spec.ingress ?? []) {
      for (const p of rule.ports ?? []) {
        if (typeof p.port === "string") assert.ok(names.has(p.port), `NetworkPolicy/${n.metadata.name}: no port ${p.port}`);
      }
    }
  }
  for (const m of objs.filter((o) => o.kind === "ServiceMonitor")) {
    const services = objs.filter((o) => o.kind === "Service" && isSubset(m.spec.selector.matchLabels, o.metadata.labels));
    for (const e of m.spec.endpoints) {
      const serving = services.filter((s) => s.spec.ports.some((p: Obj) => p.name === e.port));
      assert.ok(serving.length > 0, `ServiceMonitor/${m.metadata.name}: no Service with port ${e.port}`);
    }
  }
  for (const s of objs.filter((o) => o.kind === "StatefulSet")) {
    const svc = objs.find((o) => o.kind === "Service" && o.metadata.name === s.spec.serviceName);
    assert.ok(svc, `StatefulSet/${s.metadata.name}: no Service ${s.spec.serviceName}`);
    assert.equal(svc.spec.clusterIP, "None", `Service/${svc.metadata.name} must be headless`);
    assert.ok(isSubset(svc.spec.selector, s.spec.template.metadata.labels), `Service/${svc.metadata.name} does not select its pods`);
  }
}

// One role URI, spiffe://damselfly/ROLE/NAME, with ROLE a zero-trust role.
function checkRoleUri(where: string, uris: string[]): void {
  assert.equal(uris.length, 1, `${where}: exactly one role URI, got ${uris.join(", ")}`);
  const rest = uris[0].startsWith(ROLE_URI_PREFIX) ? uris[0].slice(ROLE_URI_PREFIX.length) : "";
  const [role, name, ...more] = rest.split("/");
  assert.ok((ROLES as readonly string[]).includes(role) && name && more.length === 0, `${where}: bad role URI ${uris[0]}`);
}

function checkCertificates(objs: Obj[]): void {
  for (const j of objs.filter((o) => o.kind === "Job")) {
    for (const c of podSpec(j).initContainers ?? []) {
      if (c.args?.[0] !== "certs" || c.args[1] !== "issue") continue;
      const [role, name] = [flagValue(c.args, "--role") ?? "", flagValue(c.args, "--name") ?? ""];
      checkRoleUri(`Job/${j.metadata.name} ${c.name}`, [`${ROLE_URI_PREFIX}${role}/${name}`]);
    }
  }
  for (const c of objs.filter((o) => o.kind === "Certificate" && !o.spec.isCA)) {
    checkRoleUri(`Certificate/${c.metadata.name}`, c.spec.uris ?? []);
    assert.ok(c.spec.usages.includes("server auth") && c.spec.usages.includes("client auth"), `Certificate/${c.metadata.name}: both TLS usages`);
  }
  for (const w of objs.filter((o) => WORKLOADS.has(o.kind))) {
    for (const v of podSpec(w).volumes ?? []) {
      if (v.csi?.driver !== "csi.cert-manager.io") continue;
      const uris = String(v.csi.volumeAttributes["csi.cert-manager.io/uri-sans"] ?? "")
        .split(",")
        .filter(Boolean);
      checkRoleUri(`${w.kind}/${w.metadata.name} volume ${v.name}`, uris);
    }
  }
}

// Every Secret a pod needs is made by the render: a cert-manager Certificate,
// or a `kubectl create secret generic NAME --from-file=/pki/DIR` step of the
// certs Job whose DIR a `damselfly certs` step wrote (--out=/pki/DIR).
function checkSecretsProvided(objs: Obj[]): void {
  const made = new Set<string>(objs.filter((o) => o.kind === "Certificate").map((c) => c.spec.secretName));
  for (const j of objs.filter((o) => o.kind === "Job")) {
    const steps = [...(podSpec(j).initContainers ?? []), ...podSpec(j).containers];
    const written = new Set(steps.map((c: Obj) => flagValue(c.args ?? [], "--out")).filter(Boolean));
    for (const c of steps) {
      const a: string[] = c.args ?? [];
      if (a[0] !== "create" || a[1] !== "secret") continue;
      assert.ok(written.has(flagValue(a, "--from-file")), `Job/${j.metadata.name} ${c.name}: nothing wrote ${flagValue(a, "--from-file")}`);
      made.add(a[3]);
    }
  }
  for (const w of objs.filter((o) => WORKLOADS.has(o.kind))) {
    for (const v of podSpec(w).volumes ?? []) {
      const refs = [v.secret?.secretName, ...(v.projected?.sources ?? []).map((s: Obj) => s.secret?.name)].filter(Boolean);
      for (const r of refs) assert.ok(made.has(r), `${w.kind}/${w.metadata.name} volume ${v.name}: nothing makes Secret ${r}`);
    }
  }
}

// The package that holds the schema of an apiVersion (kubernetes-models for
// the built-in groups). Types and required fields are checked; unknown fields
// are not (the schemas allow them).
function modelsModule(apiVersion: string): string {
  if (apiVersion.startsWith("cert-manager.io/")) return `@kubernetes-models/cert-manager/${apiVersion}`;
  if (apiVersion.startsWith("monitoring.coreos.com/")) return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  return `kubernetes-models/${apiVersion}`;
}

async function validateSchemas(objs: Obj[]): Promise<void> {
  for (const o of objs) {
    const mod = await import(modelsModule(o.apiVersion));
    const Model = mod[o.kind];
    assert.ok(Model, `no schema for ${o.apiVersion} ${o.kind}`);
    assert.doesNotThrow(() => new Model(o).validate(), `${o.kind}/${o.metadata.name} does not validate`);
  }
}

function checkMetadata(objs: Obj[]): void {
  for (const o of objs) {
    const where = `${o.kind}/${o.metadata?.name}`;
    assert.ok(o.apiVersion && o.kind && o.metadata?.name, `${where}: apiVersion, kind and metadata.name`);
    if (!CLUSTER_SCOPED.has(o.kind)) assert.equal(o.metadata.namespace, NAMESPACE, `${where}: namespace`);
    assert.equal(o.metadata.labels?.["app.kubernetes.io/part-of"], "damselfly", `${where}: part-of label`);
  }
  const keys = objs.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`);
  assert.equal(new Set(keys).size, keys.length, "an object is rendered twice");
}

test("every overlay renders, and its objects are consistent with each other and with the CLI", { skip: SKIP }, async () => {
  const overlays = readdirSync(OVERLAYS_DIR).sort();
  for (const name of REQUIRED_OVERLAYS) assert.ok(overlays.includes(name), `overlay ${name} is missing`);
  for (const overlay of overlays) {
    const objs = render(overlay);
    checkMetadata(objs);
    const program = await buildProgram();
    const commands = new Map<string, [string, Obj]>();
    for (const o of objs.filter((x) => WORKLOADS.has(x.kind))) checkWorkload(program, o, commands);
    for (const [where, [, c]] of commands) await checkServerConfig(`${overlay}: ${where}`, c);
    checkServicesAndBudgets(objs);
    checkCertificates(objs);
    checkSecretsProvided(objs);
    await validateSchemas(objs);
    const ran = new Set([...commands.values()].map(([command]) => command));
    for (const c of ["scheduler", "daemon", "manager"]) assert.ok(ran.has(c), `${overlay}: no container runs damselfly ${c}`);
  }
});

function objectOf(objs: Obj[], kind: string, name: string): Obj {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is not rendered`);
  return o;
}

function flagValue(args: string[], flag: string): string | undefined {
  return args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

test("default: daemons find every scheduler by a name its certificate holds; they run on the host and drain", { skip: SKIP }, () => {
  const objs = render("default");
  const sched = objectOf(objs, "StatefulSet", "damselfly-scheduler");
  assert.equal(sched.spec.replicas, 3);
  const cert = objectOf(objs, "Certificate", "damselfly-scheduler");
  const expected = Array.from({ length: 3 }, (_, i) => `damselfly-scheduler-${i}.${sched.spec.serviceName}.${NAMESPACE}.svc.cluster.local`);
  for (const name of ["DaemonSet/damselfly-daemon", "StatefulSet/damselfly-seed-peer"]) {
    const [kind, n] = name.split("/");
    const c = podSpec(objectOf(objs, kind, n)).containers[0];
    const addrs = (flagValue(c.args, "--scheduler") ?? "").split(",");
    assert.deepEqual(
      addrs.map((a: string) => a.replace(/:8002$/, "")),
      expected,
      `${name} --scheduler`,
    );
    for (const host of expected) assert.ok(cert.spec.dnsNames.includes(host), `scheduler certificate lacks ${host}`);
  }
  const ds = objectOf(objs, "DaemonSet", "damselfly-daemon");
  const spec = podSpec(ds);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.dnsPolicy, "ClusterFirstWithHostNet");
  const c = spec.containers[0];
  assert.equal(flagValue(c.args, "--listen"), "unix:/run/damselfly/daemon.sock");
  const run = spec.volumes.find((v: Obj) => v.name === c.volumeMounts.find((m: Obj) => m.mountPath === "/run/damselfly").name);
  assert.equal(run.hostPath?.path, "/run/damselfly", "the local API socket is on the host");
  const drain = c.env.find((e: Obj) => e.name === "DAMSELFLY_DAEMON_SERVER_SHUTDOWN_TIMEOUT").value;
  assert.ok(spec.terminationGracePeriodSeconds > Number.parseInt(drain, 10), "grace period covers the drain");
  assert.ok(c.resources?.requests && c.livenessProbe && c.readinessProbe, "resources and probes");
});

// What a service account may do: the rules of every Role/ClusterRole bound to it.
function rulesOf(objs: Obj[], sa: string): { scope: string; rules: Obj[] }[] {
  const out: { scope: string; rules: Obj[] }[] = [];
  for (const b of objs.filter((o) => o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding")) {
    if (!b.subjects.some((x: Obj) => x.kind === "ServiceAccount" && x.name === sa && x.namespace === NAMESPACE)) continue;
    const role = objectOf(objs, b.roleRef.kind, b.roleRef.name);
    out.push({ scope: b.kind === "ClusterRoleBinding" ? "cluster" : b.metadata.namespace, rules: role.rules });
  }
  return out;
}

const allows = (rules: Obj[], resource: string, verb: string) =>
  rules.some((r) => r.apiGroups.includes("") && r.resources.includes(resource) && r.verbs.includes(verb));

test("RBAC: the daemon may get and patch nodes (only its own, by policy), the manager list pods of its namespace; tokens only where used", {
  skip: SKIP,
}, () => {
  for (const overlay of ["default", "certs-job"]) {
    const objs = render(overlay);
    const accounts = new Set(objs.filter((o) => o.kind === "ServiceAccount").map((o) => o.metadata.name));
    for (const w of objs.filter((o) => WORKLOADS.has(o.kind))) {
      const spec = podSpec(w);
      const where = `${overlay}: ${w.kind}/${w.metadata.name}`;
      if (spec.serviceAccountName) assert.ok(accounts.has(spec.serviceAccountName), `${where}: no ServiceAccount ${spec.serviceAccountName}`);
      const calls = spec.serviceAccountName && rulesOf(objs, spec.serviceAccountName).length > 0;
      assert.equal(spec.automountServiceAccountToken !== false, Boolean(calls), `${where}: a token mounted iff the pod calls the API`);
    }
    const ds = objectOf(objs, "DaemonSet", "damselfly-daemon");
    const daemon = rulesOf(objs, podSpec(ds).serviceAccountName);
    assert.deepEqual(
      daemon.map((x) => x.scope),
      ["cluster"],
    );
    assert.ok(allows(daemon[0].rules, "nodes", "get") && allows(daemon[0].rules, "nodes", "patch"), "daemon: nodes get, patch");
    assert.ok(!allows(daemon[0].rules, "nodes", "update") && !allows(daemon[0].rules, "pods", "list"), "daemon: nothing more");
    const env = podSpec(ds).containers[0].env.find((e: Obj) => e.name === "DAMSELFLY_DAEMON_KUBERNETES_NODE_NAME");
    assert.equal(env?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName", "the node name from the downward API, never from the peer");

    const manager = rulesOf(objs, podSpec(objectOf(objs, "Deployment", "damselfly-manager")).serviceAccountName);
    assert.deepEqual(
      manager.map((x) => x.scope),
      [NAMESPACE],
      "the manager's rights end at its namespace",
    );
    assert.ok(allows(manager[0].rules, "pods", "list") && allows(manager[0].rules, "pods", "get"));
    // Its default selector picks the daemon pods.
    const sel = Object.fromEntries(managerSchema.extender.kubernetes.selector.default.split(",").map((kv) => kv.split("=")));
    assert.ok(isSubset(sel, ds.spec.template.metadata.labels), "extender.kubernetes.selector selects the daemon pods");

    // The own-node policy: applies to the daemon's account and guards the keys the daemon uses.
    const vap = objectOf(objs, "ValidatingAdmissionPolicy", "damselfly-daemon-own-node");
    assert.match(vap.spec.matchConditions[0].expression, new RegExp(`system:serviceaccount:${NAMESPACE}:${podSpec(ds).serviceAccountName}'`));
    const vars = Object.fromEntries(vap.spec.variables.map((v: Obj) => [v.name, v.expression]));
    assert.equal(vars.label, `'${daemonSchema.kubernetes.readyLabel.default}'`);
    assert.equal(vars.taint, `'${daemonSchema.kubernetes.notReadyTaint.default}'`);
    assert.equal(objectOf(objs, "ValidatingAdmissionPolicyBinding", "damselfly-daemon-own-node").spec.policyName, vap.metadata.name);
  }
});
