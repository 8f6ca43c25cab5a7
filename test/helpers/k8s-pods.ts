// Rendered Kubernetes pods as `ctr run` invocations, for tests that run the
// manifests of deploy/kubernetes for real on a machine without Kubernetes.
// Only what a kubelet does with a pod spec is done here, and nothing is
// hand-written: the process is the image's ENTRYPOINT with the container's
// args (or its command), env comes from the container's env with downward-API
// fieldRefs resolved, `$(VAR)` expanded as Kubernetes expands it, optional
// secretKeyRefs of absent Secrets left out, plus the service-link variables a
// kubelet adds (enableServiceLinks); each volumeMount is a bind mount of the
// directory the caller prepared for the volume; securityContext maps to
// --read-only, --cap-drop, NoNewPrivileges and the user (see podUser); limits
// to --memory-limit and requests.cpu to --cpu-shares; hostNetwork joins the
// node's network namespace, other pods their own.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "./procs.js";

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are untyped JSON
export type K8sObj = any;

// `kubectl kustomize deploy/kubernetes/overlays/<overlay>`, parsed.
export function renderOverlay(overlay: string): K8sObj[] {
  const dir = join(REPO_ROOT, "deploy", "kubernetes", "overlays", overlay);
  const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8", maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `kubectl kustomize ${overlay}: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS())
    .filter((o) => o != null);
}

export function findObject(objs: readonly K8sObj[], kind: string, name: string): K8sObj {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(o, `rendered manifests have no ${kind} ${name}`);
  return o;
}

// What the kubelet knows about one pod when it starts its containers.
export interface PodContext {
  name: string;
  namespace: string;
  nodeName: string;
  hostIP: string;
  podIP: string;
  // Secrets that exist: name -> key -> value. Absent optional refs are skipped.
  secrets?: Record<string, Record<string, string>>;
  // Service-link variables (serviceLinkEnv), added before the container's env.
  serviceEnv?: Record<string, string>;
}

const FIELD_REFS: Record<string, (p: PodContext) => string> = {
  "metadata.name": (p) => p.name,
  "metadata.namespace": (p) => p.namespace,
  "spec.nodeName": (p) => p.nodeName,
  "status.hostIP": (p) => p.hostIP,
  "status.podIP": (p) => p.podIP,
};

// Kubernetes' expansion (k8s.io/kubernetes/third_party/forked/golang/expansion):
// $(NAME) is replaced when NAME is defined, left as written otherwise; $$ is
// a literal $.
export function expandK8s(s: string, vars: Readonly<Record<string, string>>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (name === undefined) return "$";
    return Object.hasOwn(vars, name) ? vars[name]! : m;
  });
}

// The container's environment as the kubelet builds it: service links first,
// then each env entry in order, each value expanded against those before it.
export function containerEnv(c: K8sObj, pod: PodContext): Record<string, string> {
  const env: Record<string, string> = { ...pod.serviceEnv };
  for (const e of c.env ?? []) {
    if (e.value !== undefined) {
      env[e.name] = expandK8s(String(e.value), env);
      continue;
    }
    const from = e.valueFrom ?? {};
    if (from.fieldRef) {
      const get = FIELD_REFS[from.fieldRef.fieldPath];
      assert.ok(get, `env ${e.name}: fieldRef ${from.fieldRef.fieldPath} is not resolved by this helper`);
      env[e.name] = get(pod);
    } else if (from.secretKeyRef) {
      const v = pod.secrets?.[from.secretKeyRef.name]?.[from.secretKeyRef.key];
      if (v !== undefined) env[e.name] = v;
      else assert.ok(from.secretKeyRef.optional, `env ${e.name}: Secret ${from.secretKeyRef.name} is missing and not optional`);
    } else {
      assert.fail(`env ${e.name}: valueFrom ${JSON.stringify(from)} is not resolved by this helper`);
    }
  }
  return env;
}

// The service-link variables a kubelet puts in every pod of the namespace
// for each Service with a cluster IP (headless Services get none).
export function serviceLinkEnv(objs: readonly K8sObj[], clusterIps: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of objs.filter((o) => o.kind === "Service" && o.spec?.clusterIP !== "None")) {
    const ip = clusterIps[s.metadata.name];
    assert.ok(ip, `no cluster IP given for Service ${s.metadata.name}`);
    const base = s.metadata.name.toUpperCase().replace(/-/g, "_");
    const ports: K8sObj[] = s.spec.ports ?? [];
    if (!ports.length) continue;
    env[`${base}_SERVICE_HOST`] = ip;
    env[`${base}_SERVICE_PORT`] = String(ports[0].port);
    for (const p of ports) {
      if (p.name) env[`${base}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, "_")}`] = String(p.port);
      const proto = (p.protocol ?? "TCP") as string;
      const pre = `${base}_PORT_${p.port}_${proto}`;
      env[pre] = `${proto.toLowerCase()}://${ip}:${p.port}`;
      env[`${pre}_PROTO`] = proto.toLowerCase();
      env[`${pre}_PORT`] = String(p.port);
      env[`${pre}_ADDR`] = ip;
    }
    env[`${base}_PORT`] = `${(ports[0].protocol ?? "TCP").toLowerCase()}://${ip}:${ports[0].port}`;
  }
  return env;
}

// The process: command replaces the ENTRYPOINT (and drops CMD), args replace
// CMD; both expanded with the container's env.
export function containerArgv(c: K8sObj, image: { entrypoint: string[]; cmd: string[] }, env: Record<string, string>): string[] {
  const command: string[] = c.command ?? image.entrypoint;
  const args: string[] = c.args ?? (c.command ? [] : image.cmd);
  return [...command, ...args].map((a) => expandK8s(String(a), env));
}

// The uid:gid the pod's processes run as: the container's securityContext
// over the pod's; a uid without a gid takes group 0 when it is 0 (the image's
// passwd maps it so), else the uid's own number (the image has no such user:
// the runtime's default group is 0 then; we keep the pod's runAsGroup when given).
export function podUser(pod: K8sObj, c: K8sObj): { uid?: number; gid?: number; fsGroup?: number } {
  const p = pod.securityContext ?? {};
  const s = c.securityContext ?? {};
  const uid: number | undefined = s.runAsUser ?? p.runAsUser;
  const gid: number | undefined = s.runAsGroup ?? p.runAsGroup ?? (uid === undefined ? undefined : 0);
  return { uid, gid, fsGroup: p.fsGroup };
}

// The capabilities of containerd's default spec: dropping "ALL" is dropping these.
const DEFAULT_CAPS = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

const QUANTITY: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9 };

export function parseQuantity(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|m)?$/.exec(String(q));
  assert.ok(m, `quantity ${q}`);
  if (m[2] === "m") return Number(m[1]) / 1000;
  return Number(m[1]) * (m[2] ? QUANTITY[m[2]]! : 1);
}

export interface CtrRunSpec {
  // The image reference in the containerd (with the pod's user, see podUser).
  image: string;
  // The container ID.
  id: string;
  // The network namespace to join: the node's for hostNetwork, the pod's otherwise.
  netnsPath: string;
  // volume name -> host directory prepared for it (mounted read-only when the
  // mount or the volume says so).
  volumes: Readonly<Record<string, string>>;
  // Extra files mounted as the kubelet mounts them (e.g. /etc/hosts).
  files?: Readonly<Record<string, string>>;
  // Where the container's output goes; without it the run is attached
  // (`ctr run --rm`, to completion: a Job's container).
  logFile?: string;
}

function volumeReadOnly(pod: K8sObj, m: K8sObj): boolean {
  const v = (pod.volumes ?? []).find((x: K8sObj) => x.name === m.name);
  assert.ok(v, `volumeMount ${m.name} names no volume`);
  return Boolean(m.readOnly || v.csi?.readOnly || v.secret || v.projected || v.configMap);
}

// `ctr run` arguments (after `ctr -a SOCK -n NS`) that start container c of
// pod (a pod template's spec) detached, and the env it gets.
export function ctrRunArgs(pod: K8sObj, c: K8sObj, ctx: PodContext, run: CtrRunSpec, image: { entrypoint: string[]; cmd: string[] }): string[] {
  const env = containerEnv(c, ctx);
  const argv = run.logFile ? ["run", "-d", "--log-uri", `file://${run.logFile}`] : ["run", "--rm"];
  argv.push("--with-ns", `network:${run.netnsPath}`);
  for (const [k, v] of Object.entries(env)) argv.push("--env", `${k}=${v}`);
  for (const m of c.volumeMounts ?? []) {
    const src = run.volumes[m.name];
    assert.ok(src, `no directory prepared for volume ${m.name}`);
    assert.ok(!m.subPath, `volumeMount ${m.name}: subPath is not handled`);
    const opts = volumeReadOnly(pod, m) ? "rbind:ro" : "rbind:rw";
    argv.push("--mount", `type=bind,src=${src},dst=${m.mountPath},options=${opts}`);
  }
  for (const [dst, src] of Object.entries(run.files ?? {})) argv.push("--mount", `type=bind,src=${src},dst=${dst},options=rbind:ro`);
  const sc = c.securityContext ?? {};
  if (sc.readOnlyRootFilesystem) argv.push("--read-only");
  if (sc.privileged) argv.push("--privileged");
  // ctr's spec sets NoNewPrivileges unless told otherwise.
  if (sc.allowPrivilegeEscalation !== false) argv.push("--allow-new-privs");
  const drop: string[] = sc.capabilities?.drop ?? [];
  for (const cap of drop.includes("ALL") ? DEFAULT_CAPS : drop.map((d) => `CAP_${d}`)) argv.push("--cap-drop", cap);
  const limits = c.resources?.limits ?? {};
  if (limits.memory) argv.push("--memory-limit", String(parseQuantity(limits.memory)));
  const cpu = c.resources?.requests?.cpu;
  // As the kubelet: shares = millicores * 1024 / 1000, at least 2.
  if (cpu) argv.push("--cpu-shares", String(Math.max(2, Math.floor(parseQuantity(cpu) * 1024))));
  argv.push(run.image, run.id, ...containerArgv(c, image, env));
  return argv;
}
