// cert-manager's side of deploy/kubernetes/overlays/default, done with
// `damselfly certs` (cert-manager cannot run here): each Certificate becomes
// its Secret (ca.crt, tls.crt, tls.key, as cert-manager's CA issuer writes
// them) with the role and name of its one spiffe:// URI SAN and its dnsNames;
// each csi.cert-manager.io volume gets the certificate its volumeAttributes
// ask for (${POD_NAME} and friends substituted as the csi-driver does, files
// group-owned by its fs-group). What cannot be matched is refused, not guessed.
import assert from "node:assert/strict";
import { chmodSync, chownSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runDamselfly } from "./procs.js";
import type { K8sObj } from "./k8s-pods.js";

const ROLE_URI = /^spiffe:\/\/damselfly\/([a-z-]+)\/([^/]+)$/;

async function issue(caDir: string, uri: string, dns: readonly string[], out: string): Promise<Record<string, string>> {
  const m = ROLE_URI.exec(uri);
  assert.ok(m, `URI SAN ${uri} is not spiffe://damselfly/ROLE/NAME`);
  const r = await runDamselfly(["certs", "issue", "--ca", caDir, "--role", m[1]!, "--name", m[2]!, ...dns.flatMap((d) => ["--dns", d]), "--out", out]);
  assert.equal(r.code, 0, `certs issue ${uri}: ${r.stderr}`);
  return Object.fromEntries(readdirSync(out).map((f) => [f, readFileSync(join(out, f), "utf8")]));
}

// The cluster CA (the isCA Certificate's Secret) and every other
// Certificate's Secret, into secrets.
export async function issueCertificates(objs: readonly K8sObj[], dir: string, secrets: Record<string, Record<string, string>>): Promise<string> {
  const certs = objs.filter((o) => o.kind === "Certificate");
  const ca = certs.find((c) => c.spec.isCA);
  assert.ok(ca, "no CA Certificate");
  const caDir = join(dir, ca.spec.secretName);
  const r = await runDamselfly(["certs", "init", "--out", caDir]);
  assert.equal(r.code, 0, `certs init: ${r.stderr}`);
  for (const c of certs.filter((x) => !x.spec.isCA)) {
    assert.equal(c.spec.uris?.length, 1, `Certificate ${c.metadata.name}: one URI SAN`);
    secrets[c.spec.secretName] = await issue(caDir, c.spec.uris[0], c.spec.dnsNames ?? [], join(dir, c.spec.secretName));
  }
  return caDir;
}

// Fills out (the volume's directory) with the csi-driver's certificate for this pod.
export async function csiVolume(v: K8sObj, pod: { name: string; namespace: string }, caDir: string, out: string): Promise<void> {
  assert.equal(v.csi.driver, "csi.cert-manager.io");
  const attrs: Record<string, string> = v.csi.volumeAttributes ?? {};
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the csi-driver's own variables, literally
  const sub = (s: string) => s.replaceAll("${POD_NAME}", pod.name).replaceAll("${POD_NAMESPACE}", pod.namespace);
  const uri = sub(attrs["csi.cert-manager.io/uri-sans"] ?? "");
  const dns = (attrs["csi.cert-manager.io/dns-names"] ?? "").split(",").filter(Boolean).map(sub);
  assert.ok(!/\$\{/.test(uri + dns.join()), `csi attributes with variables the csi-driver does not have: ${uri} ${dns}`);
  const files = await issue(caDir, uri, dns, out);
  const gid = Number(attrs["csi.cert-manager.io/fs-group"] ?? 0);
  for (const f of Object.keys(files)) {
    chownSync(join(out, f), 0, gid);
    chmodSync(join(out, f), gid ? 0o640 : 0o644);
  }
}
