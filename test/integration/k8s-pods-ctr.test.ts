// The rendered Kubernetes workloads run for real, as far as a machine without
// Kubernetes allows: `kubectl kustomize deploy/kubernetes/overlays/<overlay>`
// (certs-job and default), then the image built by deploy/image/build.sh
// started under a private containerd (`ctr run`) with exactly the rendered
// pods' process (ENTRYPOINT + args), env (downward API, $(VAR) expansion,
// service links), mounts and securityContext (test/helpers/k8s-pods.ts,
// k8s-runtime.ts), on test hosts in network namespaces on one bridge: the
// manager, three scheduler pods and three seed-peer pods each in its own pod
// network, and on two node hosts the daemon pod on the node's network. Each
// node has its own containerd, pointed at its daemon's mirror by `damselfly
// init containerd`; both pull an image from a registry host (Debian's
// docker-registry): both get the same content and the registry sends each
// layer once (1.0x), counted in its access log.
//
// TLS material. certs-job: the rendered Job's own `damselfly certs`
// containers make it; only its `kubectl create secret` steps (another image,
// and no API server) are replaced by reading the directory as kubectl would
// (one key per file), and node certificates are issued as its README tells
// operators to. default: cert-manager cannot run here, so its Certificates and
// csi volumes are issued with `damselfly certs` from what they request (role
// URI, name, DNS names, fs-group; test/helpers/k8s-certs.ts).
//
// Substitutes for what only a cluster has: cluster DNS is an /etc/hosts
// mounted into every container (headless names to pod IPs, the manager's
// Service name to its one pod: no kube-proxy); ctr 1.6 has no --user, so the
// pod's runAsUser:runAsGroup is the USER of an image that differs from the
// built one in that config field only.
//
// Skipped unless root with the tools installed; DAMSELFLY_REQUIRE_IMAGE=1
// turns the skip into a failure (CI). Reuses build.sh's layer cache: after
// container-image.test.ts (same tree) the build is a few seconds.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startContainerd, type Containerd } from "../helpers/containerd.js";
import { findObject, podUser, renderOverlay, serviceLinkEnv, type K8sObj, type PodContext } from "../helpers/k8s-pods.js";
import {
  imageConfig,
  logOf,
  prepareVolumes,
  removeContainers,
  runContainer,
  statefulSetPods,
  userImages,
  waitReady,
  type Pod,
  type PodRuntime,
} from "../helpers/k8s-runtime.js";
import { issueCertificates } from "../helpers/k8s-certs.js";
import { createLan, type LanHost } from "../helpers/netns-lan.js";
import { directLayerGets } from "../helpers/mirror-setup.js";
import { runCommand } from "../helpers/netns.js";
import { makeOciImage, pushImage } from "../helpers/oci-image.js";
import { startRegistry } from "../helpers/registry.js";
import { REPO_ROOT, runDamselfly, runProcess, tail, type Cleanup } from "../helpers/procs.js";

const TOOLS = ["buildah", "podman", "debootstrap", "containerd", "containerd-shim-runc-v2", "ctr", "ip", "kubectl", "docker-registry", "skopeo"];
const NS = "damselfly";
const IMAGE = "localhost/damselfly-test:k8s";
const LAYERS = [3 << 20, 2 << 20, 1 << 20];

function missingTool(): string | undefined {
  const path = (process.env["PATH"] ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  return TOOLS.find((tool) => !path.some((dir) => dir !== "" && existsSync(join(dir, tool))));
}

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, containerd)";
  const m = missingTool();
  return m ? `${m} is not installed (apt-get install buildah podman debootstrap containerd iproute2 kubectl docker-registry skopeo)` : undefined;
}

// node:test runs after-hooks in the order they were added and stops at the
// first that throws: this runs them last-in first-out, every one of them.
function lifo(t: { after(fn: () => unknown): void }): Cleanup {
  const fns: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const fn of fns.reverse())
      await Promise.resolve()
        .then(fn)
        .catch((e: unknown) => errors.push(e));
    if (errors.length) throw errors[0];
  });
  return { after: (fn) => fns.push(fn) };
}

const reason = skipReason();
if (reason && process.env["DAMSELFLY_REQUIRE_IMAGE"] === "1") throw new Error(`DAMSELFLY_REQUIRE_IMAGE=1 but: ${reason}`);

// The cluster's DNS names as the headless Services publish them.
// A Service with a cluster IP (the manager's) resolves to its one pod: there
// is no kube-proxy here to route a virtual IP.
function hostsFile(pods: { name: string; service: string; ip: string }[], services: Record<string, string>): string {
  const lines = ["127.0.0.1 localhost"];
  for (const [svc, ip] of Object.entries(services)) lines.push(`${ip} ${svc}.${NS}.svc.cluster.local`);
  for (const p of pods) lines.push(`${p.ip} ${p.name}.${p.service}.${NS}.svc.cluster.local`, `${p.ip} ${p.service}.${NS}.svc.cluster.local`);
  return lines.join("\n") + "\n";
}

function podCtx(name: string, node: LanHost & { nodeName: string }, podIP: string, serviceEnv: Record<string, string>): PodContext {
  return { name, namespace: NS, nodeName: node.nodeName, hostIP: node.ip, podIP, serviceEnv, secrets: {} };
}

// The certs Job: its damselfly init containers run in order under ctr; each
// `kubectl create secret generic NAME --from-file=DIR` step becomes Secret
// NAME holding DIR's files, as kubectl makes it.
async function runCertsJob(rt: PodRuntime, job: K8sObj, host: LanHost & { nodeName: string }): Promise<void> {
  const pod: Pod = { name: "damselfly-certs-job", spec: job.spec.template.spec };
  const volumes = await prepareVolumes(rt, pod, join(rt.dir, "nodes", host.nodeName));
  for (const c of pod.spec.initContainers) {
    if (c.image.includes("kubectl")) {
      const [verb, kind, type, name, from] = c.args as string[];
      assert.deepEqual([verb, kind, type], ["create", "secret", "generic"], `${c.name}: unexpected kubectl step`);
      const m = /^--from-file=(\/pki\/.+)$/.exec(from ?? "");
      assert.ok(m && name, `${c.name}: unexpected args ${c.args.join(" ")}`);
      const dir = join(volumes["pki"]!, m[1]!.slice("/pki/".length));
      rt.secrets[name] = Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), "utf8")]));
      continue;
    }
    const r = await runContainer(rt, pod, c, podCtx(pod.name, host, host.ip, {}), host.netnsPath, volumes, true);
    assert.equal(r.code, 0, `certs Job step ${c.name} failed: ${r.stderr}${r.stdout}`);
  }
}

// What each started container must run: the rendered args, expanded.
function expectedProcesses(rt: PodRuntime, pods: Pod[], ds: K8sObj): Map<string, { uid: number; args: string[] }> {
  const out = new Map<string, { uid: number; args: string[] }>();
  for (const id of rt.started) {
    const podName = id.slice(0, id.lastIndexOf("."));
    const spec = pods.find((p) => p.name === podName)?.spec ?? ds.spec.template.spec;
    const c = spec.containers[0];
    out.set(id, { uid: podUser(spec, c).uid ?? -1, args: rt.argsOf.get(id)! });
  }
  return out;
}

interface World {
  rt: PodRuntime;
  objs: K8sObj[];
  nodes: (LanHost & { nodeName: string; root: string; containerd?: Containerd; hostsDir?: string })[];
}

async function startPods(w: World, pods: Pod[], hosts: LanHost[], serviceEnv: Record<string, string>): Promise<void> {
  for (const [i, pod] of pods.entries()) {
    const node = w.nodes[i % w.nodes.length]!;
    const volumes = await prepareVolumes(w.rt, pod, node.root);
    const c = pod.spec.containers[0];
    const r = await runContainer(w.rt, pod, c, podCtx(pod.name, node, hosts[i]!.ip, serviceEnv), hosts[i]!.netnsPath, volumes, false);
    assert.equal(r.code, 0, `ctr run ${pod.name}: ${r.stderr}`);
  }
  for (const [i, pod] of pods.entries()) await waitReady(w.rt, `${pod.name}.${pod.spec.containers[0].name}`, pod.spec.containers[0], hosts[i]!.ip);
}

// The node certificate of overlay certs-job, issued as its README tells
// operators to, with the CA of the damselfly-ca Secret.
async function issueNodeCert(w: World, node: World["nodes"][number]): Promise<void> {
  const caDir = join(w.rt.dir, "operator-ca");
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  for (const [f, v] of Object.entries(w.rt.secrets["damselfly-ca"]!)) writeFileSync(join(caDir, f), v, { mode: 0o600 });
  const out = join(node.root, "etc/damselfly/tls");
  const r = await runDamselfly(["certs", "issue", "--ca", caDir, "--role", "peer", "--name", node.nodeName, "--out", out]);
  assert.equal(r.code, 0, `certs issue for ${node.nodeName}: ${r.stderr}`);
}

const NODE_CONTAINERD_CONFIG = `version = 2

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`;

async function startDaemons(w: World, ds: K8sObj, serviceEnv: Record<string, string>): Promise<void> {
  for (const [i, node] of w.nodes.entries()) {
    const pod: Pod = { name: `damselfly-daemon-${i}x7k2`, spec: structuredClone(ds.spec.template.spec) };
    if (pod.spec.volumes.some((v: K8sObj) => v.name === "tls" && v.hostPath)) await issueNodeCert(w, node);
    assert.equal(pod.spec.hostNetwork, true);
    // The node's containerd config as a containerd 1.6/1.7 node has it, with
    // config_path set: the pod's onboarding init container reads it through
    // its hostPath mount and writes hosts.toml there, restarting nothing.
    mkdirSync(join(node.root, "etc/containerd"), { recursive: true });
    writeFileSync(join(node.root, "etc/containerd/config.toml"), NODE_CONTAINERD_CONFIG);
    const volumes = await prepareVolumes(w.rt, pod, node.root);
    for (const ic of pod.spec.initContainers ?? []) {
      const r = await runContainer(w.rt, pod, ic, podCtx(pod.name, node, node.ip, serviceEnv), node.netnsPath, volumes, true);
      assert.equal(r.code, 0, `init container ${ic.name} on ${node.nodeName}: ${r.stderr}${r.stdout}`);
    }
    const defaultHosts = readFileSync(join(node.root, "etc/containerd/certs.d/_default/hosts.toml"), "utf8");
    assert.match(defaultHosts, /\[host\."http:\/\/127\.0\.0\.1:65001"\]/, "the init container named the daemon's mirror");
    assert.equal(readFileSync(join(node.root, "etc/containerd/config.toml"), "utf8"), NODE_CONTAINERD_CONFIG, "config.toml untouched");
    const c = pod.spec.containers[0];
    const s = await runContainer(w.rt, pod, c, podCtx(pod.name, node, node.ip, serviceEnv), node.netnsPath, volumes, false);
    assert.equal(s.code, 0, `ctr run ${pod.name}: ${s.stderr}`);
    await waitReady(w.rt, `${pod.name}.${c.name}`, c, node.ip);
  }
}

// Image pulls through the node's daemon: `damselfly init containerd` writes
// hosts.toml for the registry; ctr (which makes the registry requests itself)
// runs in the node's network namespace, where the daemon's proxy listens.
async function pullOnNode(node: World["nodes"][number], registryUrl: string, ref: string): Promise<string[]> {
  const hostsDir = join(node.root, "etc/containerd/certs.d");
  const init = await runDamselfly(["init", "containerd", "--config-path", hostsDir, "--registry", registryUrl, "--proxy", "http://127.0.0.1:65001"]);
  assert.equal(init.code, 0, `init containerd: ${init.stderr}`);
  const cd = node.containerd!;
  const argv = ["netns", "exec", node.name, "ctr", "-a", cd.socket, "-n", cd.namespace, "images", "pull", "--hosts-dir", hostsDir, ref];
  const r = await runCommand("ip", argv, { timeoutMs: 180_000 });
  assert.equal(r.code, 0, `pull on ${node.nodeName}: ${r.stderr.slice(-2000)}`);
  const check = await cd.check(ref);
  assert.match(check[0] ?? "", / complete \(\d+\/\d+\) .* true$/, `not complete and unpacked on ${node.nodeName}`);
  const content = await cd.ctr(["content", "ls", "-q"]);
  return content.stdout.split("\n").filter(Boolean).sort();
}

for (const overlay of ["certs-job", "default"]) {
  test(
    `overlay ${overlay}: the rendered manager, scheduler, seed-peer and daemon pods run under containerd, form a swarm, and two nodes pull an image with registry egress 1.0x`,
    {
      skip: reason ?? false,
      timeout: 30 * 60_000,
    },
    (tc) => runOverlay(tc, overlay),
  );
}

async function runOverlay(tc: TestContext, overlay: string): Promise<void> {
  const started = process.hrtime.bigint();
  const t = lifo(tc);
  const dir = mkdtempSync(join(tmpdir(), "dfk8s-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const build = await runProcess("sh", [join(REPO_ROOT, "deploy/image/build.sh")], { env: { ...process.env, IMAGE }, cwd: REPO_ROOT, timeoutMs: 25 * 60_000 });
  assert.equal(build.code, 0, `build failed\n${tail(build.stderr)}\n${tail(build.stdout.toString("utf8"))}`);
  tc.diagnostic(build.stdout.toString("utf8").trim().split("\n").at(-1) ?? "");

  const objs = renderOverlay(overlay);
  const scheds = statefulSetPods(findObject(objs, "StatefulSet", "damselfly-scheduler"));
  const seeds = statefulSetPods(findObject(objs, "StatefulSet", "damselfly-seed-peer"));
  const ds = findObject(objs, "DaemonSet", "damselfly-daemon");
  const job = overlay === "certs-job" ? findObject(objs, "Job", "damselfly-certs") : undefined;
  const manager: Pod = { name: "damselfly-manager-5c9d8b7f4-q2x7w", spec: findObject(objs, "Deployment", "damselfly-manager").spec.template.spec };

  const lan = await createLan("dfk", 77, t);
  const reg = await lan.addHost("reg", 2);
  const nodes: World["nodes"] = [];
  for (const i of [1, 2]) {
    const h = await lan.addHost(`n${i}`, 10 + i);
    nodes.push({ ...h, nodeName: `node-${i}`, root: join(dir, "nodes", `node-${i}`) });
  }
  const schedHosts: LanHost[] = [];
  for (const [i] of scheds.entries()) schedHosts.push(await lan.addHost(`s${i}`, 20 + i));
  const seedHosts: LanHost[] = [];
  for (const [i] of seeds.entries()) seedHosts.push(await lan.addHost(`p${i}`, 30 + i));
  const mgrHost = await lan.addHost("mgr", 45);
  const jobHost = { ...(await lan.addHost("job", 40)), nodeName: "node-1" };

  const cd = await startContainerd(join(dir, "rt"), { t });
  const hosts = writeHostsFile(dir, scheds, schedHosts, seeds, seedHosts, mgrHost);
  const rt: PodRuntime = {
    cd,
    imageConfig: await imageConfig(IMAGE),
    images: await userImages(
      IMAGE,
      podUsers([manager, ...scheds, ...seeds, ...(job ? [{ name: "job", spec: job.spec.template.spec }] : []), { name: "ds", spec: ds.spec.template.spec }]),
      dir,
      cd,
    ),
    dir,
    hostsFile: hosts,
    secrets: {},
    started: [],
    argsOf: new Map(),
  };
  t.after(() => removeContainers(rt));
  let passed = false;
  // Runs before the containers go: on failure every pod's log tail goes to
  // the report; DAMSELFLY_TEST_K8S_LOGS=DIR keeps the logs (CI artifacts).
  t.after(() => {
    const keep = process.env["DAMSELFLY_TEST_K8S_LOGS"];
    if (keep) cpSync(join(dir, "logs"), keep, { recursive: true });
    if (!passed) for (const id of rt.started) tc.diagnostic(`--- ${id}\n${logOf(rt, id)}`);
  });
  const w: World = { rt, objs, nodes };
  // A kubelet injects these into every pod of the namespace (the manager's Service).
  const serviceEnv = serviceLinkEnv(objs, { "damselfly-manager": mgrHost.ip });

  if (job) await runCertsJob(rt, job, jobHost);
  else rt.csiCaDir = await issueCertificates(objs, join(dir, "cert-manager"), rt.secrets);
  // The manager first: the schedulers keep their config alive with it.
  await startPods(w, [manager], [mgrHost], serviceEnv);
  await startPods(w, scheds, schedHosts, serviceEnv);
  await startPods(w, seeds, seedHosts, serviceEnv);
  await startDaemons(w, ds, serviceEnv);

  await pullTwiceThroughDaemons(tc, t, dir, reg, nodes);
  // Each scheduler reached the manager through the Service's name (it logs
  // DF_ERR_MANAGER_UNAVAILABLE at its first keep-alive otherwise).
  for (const p of scheds) assert.doesNotMatch(logOf(rt, `${p.name}.scheduler`, Infinity), /DF_ERR_MANAGER_UNAVAILABLE/, `${p.name} cannot reach the manager`);
  await checkProcesses(tc, rt, expectedProcesses(rt, [manager, ...scheds, ...seeds], ds));
  passed = true;
  tc.diagnostic(`took ${Number((process.hrtime.bigint() - started) / 1_000_000n)} ms`);
}

function writeHostsFile(dir: string, scheds: Pod[], schedHosts: LanHost[], seeds: Pod[], seedHosts: LanHost[], mgr: LanHost): string {
  const file = join(dir, "hosts");
  const pods = [
    ...scheds.map((p, i) => ({ name: p.name, service: "damselfly-scheduler", ip: schedHosts[i]!.ip })),
    ...seeds.map((p, i) => ({ name: p.name, service: "damselfly-seed-peer", ip: seedHosts[i]!.ip })),
  ];
  writeFileSync(file, hostsFile(pods, { "damselfly-manager": mgr.ip }));
  return file;
}

// The uid:gid of every container of these pods.
function podUsers(pods: Pod[]): string[] {
  const users = new Set<string>();
  for (const p of pods) {
    for (const c of [...(p.spec.initContainers ?? []), ...p.spec.containers]) {
      const u = podUser(p.spec, c);
      users.add(`${u.uid}:${u.gid}`);
    }
  }
  return [...users];
}

// A registry host with a test image; each node's containerd pulls it through
// its daemon: same content on both, each layer sent by the registry once.
async function pullTwiceThroughDaemons(tc: TestContext, t: Cleanup, dir: string, reg: LanHost, nodes: World["nodes"]): Promise<void> {
  const registry = await startRegistry({ dir: join(dir, "registry"), netns: reg.name, host: reg.ip, t });
  const image = await makeOciImage(join(dir, "image"), { layers: LAYERS.map((size) => ({ size })), seed: "k8s-pods" });
  const ref = `${registry.hostPort}/test/app:v1`;
  await pushImage(image.layoutDir, ref);
  registry.resetAccessLog();

  for (const n of nodes) n.containerd = await startContainerd(join(dir, `c-${n.nodeName}`), { t });
  const content1 = await pullOnNode(nodes[0]!, registry.url, ref);
  const content2 = await pullOnNode(nodes[1]!, registry.url, ref);
  assert.deepEqual(content2, content1, "the two nodes hold different content");
  for (const l of image.layers) assert.ok(content1.includes(l.digest), `layer ${l.digest} missing`);

  const log = await registry.accessLog();
  assert.deepEqual(directLayerGets(log, image), [], "containerd fetched layers from the registry itself, not through the daemon");
  const sent = image.layers.reduce((a, l) => a + registry.blobBytesSent(l.digest), 0);
  tc.diagnostic(`registry sent ${sent} layer bytes for two pulls of ${image.totalLayerBytes} (${(sent / image.totalLayerBytes).toFixed(2)}x)`);
  for (const l of image.layers)
    assert.equal(registry.blobBytesSent(l.digest), l.size, `layer ${l.digest}: registry sent it ${registry.blobBytesSent(l.digest) / l.size}x`);
}

// Each pod's process runs as its securityContext's user with the rendered
// args (the entrypoint script execs node with them); its peak resident
// memory (VmHWM) goes to the report.
async function checkProcesses(t: { diagnostic(s: string): void }, rt: PodRuntime, expected: Map<string, { uid: number; args: string[] }>): Promise<void> {
  const r = await rt.cd.ctr(["task", "ls"]);
  let seen = 0;
  for (const line of r.stdout.split("\n").slice(1)) {
    const [id, pid, state] = line.trim().split(/\s+/);
    if (!id || !pid) continue;
    assert.equal(state, "RUNNING", `${id} is ${state}`);
    const want = expected.get(id);
    assert.ok(want, `unexpected task ${id}`);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    assert.equal(Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]), want.uid, `${id}: uid`);
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
    assert.deepEqual(argv.slice(-want.args.length), want.args, `${id}: the process's args are not the rendered ones`);
    t.diagnostic(`${id}: uid ${want.uid}, peak RSS ${/VmHWM:\s+(\d+ kB)/.exec(status)?.[1] ?? "?"}`);
    seen++;
  }
  assert.equal(seen, expected.size, "every pod's container runs");
}
