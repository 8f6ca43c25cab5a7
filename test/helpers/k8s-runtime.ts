// The kubelet's side of running rendered pods under a private containerd
// (see k8s-pods.ts for the pod -> `ctr run` mapping): pod names as the
// StatefulSet and DaemonSet controllers make them, volumes prepared as the
// kubelet prepares them (hostPath under a per-node root, emptyDir and
// PersistentVolumeClaims as fresh directories with fsGroup ownership, Secrets
// and projected Secrets as files of mode 0644), the image with the pod's user,
// readiness probes as the kubelet sends them (HTTPS without a client
// certificate, not verified), and cleanup of every task and container.
import assert from "node:assert/strict";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { dirname, join } from "node:path";
import type { Containerd } from "./containerd.js";
import { mustRun, runCommand } from "./netns.js";
import { csiVolume } from "./k8s-certs.js";
import { containerArgv, containerEnv, ctrRunArgs, podUser, type K8sObj, type PodContext } from "./k8s-pods.js";

export type Secrets = Record<string, Record<string, string>>;

export interface PodRuntime {
  readonly cd: Containerd;
  // Image entrypoint and cmd (the same for every user variant).
  readonly imageConfig: { entrypoint: string[]; cmd: string[] };
  // "uid:gid" -> the image in the containerd with that USER (see userImages).
  readonly images: ReadonlyMap<string, string>;
  readonly dir: string;
  // Mounted at /etc/hosts in every container: the cluster's DNS names.
  readonly hostsFile: string;
  readonly secrets: Secrets;
  // Container IDs started, in order (stopped in reverse).
  readonly started: string[];
  // Container ID -> its process's args after the entrypoint (k8s args, expanded).
  readonly argsOf: Map<string, string[]>;
  // The CA that stands in for cert-manager's issuer of csi volumes (overlay default).
  csiCaDir?: string;
}

export interface Pod {
  name: string;
  spec: K8sObj;
}

// The pods of a StatefulSet: NAME-0..NAME-(replicas-1), each with its claims
// from volumeClaimTemplates as volumes (as the StatefulSet controller adds them).
export function statefulSetPods(sts: K8sObj): Pod[] {
  const claims = (sts.spec.volumeClaimTemplates ?? []).map((c: K8sObj) => c.metadata.name as string);
  return Array.from({ length: sts.spec.replicas ?? 1 }, (_, i) => {
    const name = `${sts.metadata.name}-${i}`;
    const spec = structuredClone(sts.spec.template.spec);
    spec.volumes = [...(spec.volumes ?? []), ...claims.map((c: string) => ({ name: c, persistentVolumeClaim: { claimName: `${c}-${name}` } }))];
    return { name, spec };
  });
}

// The image ctr 1.6 runs for a uid:gid. Its `ctr run` has no --user, so each
// user the pods run as gets the image with only its config's USER changed
// (buildah config, no new layer): what a kubelet's runAsUser/runAsGroup do.
export async function userImages(image: string, users: readonly string[], dir: string, cd: Containerd): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const repo = image.slice(0, image.lastIndexOf(":"));
  for (const user of users) {
    const tag = `k8s-u${user.replace(":", "-g")}`;
    const ctr = (await mustRun("buildah", ["from", "--pull-never", image], { timeoutMs: 60_000 })).stdout.trim();
    await mustRun("buildah", ["config", "--user", user, ctr], { timeoutMs: 60_000 });
    await mustRun("buildah", ["commit", "--rm", ctr, `${repo}:${tag}`], { timeoutMs: 120_000 });
    const archive = join(dir, `${tag}.tar`);
    await mustRun("podman", ["save", "--format", "oci-archive", "-o", archive, `${repo}:${tag}`], { timeoutMs: 300_000 });
    await runCommand("podman", ["rmi", `${repo}:${tag}`], { timeoutMs: 60_000 });
    const r = await cd.ctr(["images", "import", "--base-name", repo, archive], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, `ctr images import: ${r.stderr}`);
    out.set(user, `${repo}:${tag}`);
  }
  return out;
}

export async function imageConfig(image: string): Promise<{ entrypoint: string[]; cmd: string[] }> {
  const r = await mustRun("podman", ["image", "inspect", "--format", "{{json .Config}}", image], { timeoutMs: 60_000 });
  const c = JSON.parse(r.stdout) as { Entrypoint?: string[]; Cmd?: string[] };
  return { entrypoint: c.Entrypoint ?? [], cmd: c.Cmd ?? [] };
}

// A Secret's keys as files of a kubelet secret volume: mode 0644 (its
// defaultMode), group fsGroup when the pod has one.
function writeSecretFiles(dir: string, data: Record<string, string>, items: K8sObj[] | undefined, gid: number): void {
  const list = items ?? Object.keys(data).map((k) => ({ key: k, path: k }));
  for (const it of list) {
    assert.ok(data[it.key] !== undefined, `Secret has no key ${it.key}`);
    const f = join(dir, it.path);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, data[it.key]!);
    chmodSync(f, it.mode ?? 0o644);
    chownSync(f, 0, gid);
  }
}

function secretData(rt: PodRuntime, name: string): Record<string, string> {
  const s = rt.secrets[name];
  assert.ok(s, `Secret ${name} does not exist (the pod would wait in ContainerCreating)`);
  return s;
}

// A directory for each of the pod's volumes. nodeRoot: "/" of the pod's node
// for hostPath volumes.
export async function prepareVolumes(rt: PodRuntime, pod: Pod, nodeRoot: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const gid: number = pod.spec.securityContext?.fsGroup ?? 0;
  for (const v of pod.spec.volumes ?? []) {
    let dir = join(rt.dir, "pods", pod.name, v.name);
    if (v.hostPath) {
      dir = join(nodeRoot, v.hostPath.path);
      if (v.hostPath.type === "Directory") assert.ok(existsSync(dir), `hostPath ${v.hostPath.path} (type Directory) is missing on the node`);
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    } else if (v.emptyDir) {
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o777);
    } else if (v.persistentVolumeClaim) {
      // A fresh volume, its ownership changed to fsGroup (setgid) by the kubelet.
      mkdirSync(dir, { recursive: true });
      chownSync(dir, 0, gid);
      chmodSync(dir, 0o2775);
    } else if (v.secret) {
      mkdirSync(dir, { recursive: true });
      writeSecretFiles(dir, secretData(rt, v.secret.secretName), v.secret.items, gid);
    } else if (v.projected) {
      mkdirSync(dir, { recursive: true });
      for (const src of v.projected.sources) {
        assert.ok(src.secret, `projected source ${JSON.stringify(src)} is not handled`);
        writeSecretFiles(dir, secretData(rt, src.secret.name), src.secret.items, gid);
      }
    } else if (v.csi && rt.csiCaDir) {
      mkdirSync(dir, { recursive: true });
      await csiVolume(v, { name: pod.name, namespace: "damselfly" }, rt.csiCaDir, dir);
    } else {
      assert.fail(`volume ${v.name} (${Object.keys(v).join(",")}) is not handled`);
    }
    out[v.name] = dir;
  }
  return out;
}

// Starts container c of the pod (detached) or runs it to completion (attached).
export async function runContainer(rt: PodRuntime, pod: Pod, c: K8sObj, ctx: PodContext, netnsPath: string, volumes: Record<string, string>, attach: boolean) {
  const u = podUser(pod.spec, c);
  const image = rt.images.get(`${u.uid}:${u.gid}`);
  assert.ok(image, `no image prepared for user ${u.uid}:${u.gid}`);
  const id = `${pod.name}.${c.name}`;
  const logFile = join(rt.dir, "logs", `${id}.log`);
  mkdirSync(dirname(logFile), { recursive: true });
  const args = ctrRunArgs(
    pod.spec,
    c,
    ctx,
    { image, id, netnsPath, volumes, files: { "/etc/hosts": rt.hostsFile }, ...(attach ? {} : { logFile }) },
    rt.imageConfig,
  );
  if (!attach) {
    rt.started.push(id);
    rt.argsOf.set(id, containerArgv(c, { entrypoint: [], cmd: [] }, containerEnv(c, ctx)));
  }
  // runc's state under our dir, not /run/containerd/runc/<namespace> that
  // every containerd shares.
  args.splice(1, 0, "--runc-root", join(rt.dir, "runc"));
  const r = await rt.cd.ctr(args, { timeoutMs: 120_000 });
  return { ...r, id, logFile, argv: args };
}

export function logOf(rt: PodRuntime, id: string, max = 3000): string {
  const f = join(rt.dir, "logs", `${id}.log`);
  return existsSync(f) ? readFileSync(f, "utf8").slice(-max) : "(no log)";
}

// A readiness probe as the kubelet sends it: HTTPS, no client certificate,
// the server's certificate not verified. Resolves the status (0: no answer).
export function probeHttps(host: string, port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get({ host, port, path, rejectUnauthorized: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Polls the container's readinessProbe (httpGet on a named or numbered port)
// at ip until it answers 2xx; bounded by tries, not by a clock.
export async function waitReady(rt: PodRuntime, id: string, c: K8sObj, ip: string, tries = 120): Promise<void> {
  const p = c.readinessProbe?.httpGet;
  assert.ok(p, `${id}: no httpGet readinessProbe`);
  const port = typeof p.port === "number" ? p.port : (c.ports ?? []).find((x: K8sObj) => x.name === p.port)?.containerPort;
  assert.ok(port, `${id}: probe port ${p.port} is not declared`);
  assert.equal(p.scheme, "HTTPS");
  let last = 0;
  for (let i = 0; i < tries; i++) {
    last = await probeHttps(ip, port, p.path);
    if (last >= 200 && last < 400) return;
    const t = await rt.cd.ctr(["task", "ls"], { timeoutMs: 30_000 });
    const line = t.stdout.split("\n").find((l) => l.split(/\s+/)[0] === id) ?? "";
    assert.ok(!/STOPPED/.test(line), `${id} exited before it was ready:\n${logOf(rt, id)}`);
    await sleep(500);
  }
  assert.fail(`${id}: readiness probe https://${ip}:${port}${p.path} answered ${last} after ${tries} tries:\n${logOf(rt, id)}`);
}

// Deletes every started task (SIGKILL, waits for the exit) and container;
// then, should containerd have failed to, kills what its shims still run.
export async function removeContainers(rt: PodRuntime): Promise<void> {
  for (const id of [...rt.started].reverse()) {
    await rt.cd.ctr(["task", "kill", "-s", "SIGKILL", id], { timeoutMs: 30_000 }).catch(() => undefined);
    await rt.cd.ctr(["task", "delete", "--force", id], { timeoutMs: 60_000 }).catch(() => undefined);
    await rt.cd.ctr(["container", "rm", id], { timeoutMs: 60_000 }).catch(() => undefined);
  }
  killShims(rt.cd.socket);
}

// The shims (and their containers' processes) of this containerd, found by
// the socket in their command line: a shim outlives its containerd.
function killShims(socket: string): void {
  const shims: number[] = [];
  for (const p of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (argv[0]?.endsWith("containerd-shim-runc-v2") && argv.includes(socket)) shims.push(Number(p));
  }
  const kill = (pid: number) => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  };
  for (const p of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1]);
      if (shims.includes(ppid)) kill(Number(p));
    } catch {
      // gone already
    }
  }
  for (const s of shims) kill(s);
}
