// `damselfly certs init|issue`: a cluster CA and role-bound component
// certificates (docs/operations/security.md). cert-manager, or any CA that
// writes the role URI SAN, can replace this.
import { Command, Option } from "commander";
import { ROLES, isRole } from "../../common/tls/roles.js";
import { DamselflyError } from "../../common/errors.js";
import { exitOk, usageOutput, withErrors } from "./kit.js";

const collect = (v: string, prev: string[]) => [...prev, v];

export function certsCommand(): Command {
  const prefix = "damselfly certs";
  const certs = new Command("certs")
    .description("make a cluster CA and component certificates for mutual TLS (roles: " + ROLES.join(", ") + ")")
    .configureOutput(usageOutput(prefix))
    .exitOverride();
  certs
    .command("init")
    .description("create a cluster CA: DIR/ca.crt and DIR/ca.key (mode 0600); refuses to overwrite one")
    .requiredOption("--out <dir>", "directory for the CA")
    .configureOutput(usageOutput(prefix))
    .exitOverride()
    .action(
      withErrors(prefix, async (opts: { out: string }) => {
        const { createCa } = await import("../../common/tls/issue.js");
        const r = await createCa(opts.out);
        process.stdout.write(`${r.certFile}\n${r.keyFile}\n`);
        await exitOk();
      }),
    );
  certs
    .command("issue")
    .description("issue a component certificate signed by the CA: OUT/tls.crt, OUT/tls.key (0600) and OUT/ca.crt")
    .requiredOption("--ca <dir>", "the CA directory (from certs init)")
    .addOption(new Option("--role <role>", "the component's role").choices([...ROLES]).makeOptionMandatory())
    .requiredOption("--name <name>", "the component's name (a peer's host name: the scheduler binds its host to it)")
    .option("--ip <ip>", "IP address the component is reached at (repeatable)", collect, [] as string[])
    .option("--dns <name>", "DNS name the component is reached at (repeatable)", collect, [] as string[])
    .option("--days <n>", "validity in days", "365")
    .requiredOption("--out <dir>", "directory for the certificate and key")
    .configureOutput(usageOutput(prefix))
    .exitOverride()
    .action(
      withErrors(prefix, async (opts: { ca: string; role: string; name: string; ip: string[]; dns: string[]; days: string; out: string }) => {
        if (!isRole(opts.role)) throw new DamselflyError("DF_ERR_USAGE", `--role must be one of ${ROLES.join(", ")}`);
        const days = Number(opts.days);
        const { issueCert } = await import("../../common/tls/issue.js");
        const r = await issueCert({ caDir: opts.ca, role: opts.role, name: opts.name, ips: opts.ip, dns: opts.dns, out: opts.out, days });
        process.stdout.write(`${r.certFile}\n${r.keyFile}\n${r.caFile}\n`);
        await exitOk();
      }),
    );
  return certs;
}
