// A cluster CA and role-bound certificates for tests, made with the same code
// as `damselfly certs`.
import { join } from "node:path";
import { createCa, issueCert } from "../../src/common/tls/issue.js";
import type { Role } from "../../src/common/tls/roles.js";

export interface CertFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface Pki {
  caDir: string;
  // Issues (once per name and role) OUT = DIR/ROLE-NAME.
  issue(role: Role, name: string, opts?: { ips?: string[]; dns?: string[] }): Promise<CertFiles>;
  // --tls-ca/--tls-cert/--tls-key for a component.
  args(role: Role, name: string): Promise<string[]>;
}

export async function makePki(dir: string): Promise<Pki> {
  const caDir = join(dir, "ca");
  await createCa(caDir);
  const issued = new Map<string, Promise<CertFiles>>();
  const issue = (role: Role, name: string, opts: { ips?: string[]; dns?: string[] } = {}): Promise<CertFiles> => {
    const key = `${role}/${name}/${(opts.ips ?? []).join(",")}/${(opts.dns ?? []).join(",")}`;
    let p = issued.get(key);
    if (!p) {
      const out = join(dir, `${role}-${name}-${issued.size}`);
      p = issueCert({ caDir, role, name, ips: opts.ips ?? ["127.0.0.1"], dns: opts.dns ?? ["localhost"], out }).then((r) => ({
        ca: r.caFile,
        cert: r.certFile,
        key: r.keyFile,
      }));
      issued.set(key, p);
    }
    return p;
  };
  return {
    caDir,
    issue,
    args: async (role, name) => {
      const f = await issue(role, name);
      return ["--tls-ca", f.ca, "--tls-cert", f.cert, "--tls-key", f.key];
    },
  };
}

// `openssl req` arguments for a self-signed P-256 certificate (a test CA or
// server certificate made outside our own issuer): `extensions` are
// "-addext" values.
export function selfSignedArgs(keyFile: string, certFile: string, subject: string, days: number, extensions: readonly string[]): string[] {
  const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyFile, "-out", certFile];
  args.push("-days", String(days), "-subj", subject);
  for (const e of extensions) args.push("-addext", e);
  return args;
}
