// `damselfly init containerd|docker|podman`: points a container runtime at
// the local daemon's registry mirror/proxy by writing its config file(s).
// Errors are thrown: run() in main.ts prints them with their code and exit
// status like every other command's.
import { resolve } from "node:path";
import { Command } from "commander";
import { DamselflyError } from "../common/errors.js";
import { containerdChanges, containerdHint, DEFAULT_CONTAINERD_CONFIG_PATH } from "./init/containerd.js";
import { DEFAULT_CONTAINERD_CONFIG } from "./init/containerd-config.js";
import { detect, plan } from "./init/containerd-onboard.js";
import { carryOut } from "./init/containerd-run.js";
import { DEFAULT_DAEMON_JSON, dockerChanges, type DockerInitOptions } from "./init/docker.js";
import { DEFAULT_DROP_IN } from "./init/dockerd.js";
import { collectList, DEFAULT_PROXY, parseProxyUrl, parseRegistries } from "./init/endpoints.js";
import { applyChanges, readExisting, type FileChange, type Output } from "./init/files.js";
import { DEFAULT_PODMAN_REGISTRIES, DEFAULT_REGISTRIES_CONF, parsePodmanRegistries, PODMAN_HINT, updateRegistriesConf } from "./init/podman.js";

interface CommonOptions {
  proxy: string;
  dryRun?: boolean;
}

interface ContainerdInitOptions {
  configPath?: string;
  registry?: string[];
  config: string;
  containerd: string;
  restart?: boolean;
  restartCommand: string;
  json?: boolean;
}

// Commands added with addCommand() do not inherit the program's settings:
// usage errors get the same "damselfly: DF_ERR_USAGE: ..." shape and exit 2
// (run() turns the thrown CommanderError into the exit status).
function usageSettings(cmd: Command): Command {
  return cmd.exitOverride().configureOutput({
    outputError: (str: string, write: (s: string) => void) => write(`damselfly: DF_ERR_USAGE: ${str.trim().replace(/^error:\s*/i, "")}\n`),
  });
}

function addCommonOptions(cmd: Command): Command {
  return cmd
    .option("--proxy <url>", "the Damselfly daemon's registry mirror/proxy, http(s)://HOST:PORT", DEFAULT_PROXY)
    .option("--dry-run", "print each file's path and full new content; write nothing");
}

const REGISTRY_HELP = "registry to route through the daemon; repeatable or comma-separated";

async function finish(changes: FileChange[], opts: CommonOptions, hint: string, out: Output): Promise<void> {
  await applyChanges(changes, { dryRun: opts.dryRun === true, out });
  out.write(hint);
}

export function makeInitCommand(out: Output = process.stdout): Command {
  const init = usageSettings(new Command("init"))
    .description("configure a container runtime to pull images through the local daemon's registry mirror/proxy")
    .addHelpText(
      "after",
      `\nThe previous version of every file changed is kept as <file>.damselfly-backup-<YYYYMMDDHHMMSS>.\n\nExamples:\n  damselfly init containerd --registry docker.io,ghcr.io\n  damselfly init containerd --json --restart\n  damselfly init docker --dry-run\n  damselfly init podman --proxy http://127.0.0.1:65001`,
    );

  const containerd = addCommonOptions(
    init
      .command("containerd")
      .description(
        "write containerd hosts.toml files (certs.d) naming the daemon as pull/resolve host; detect whether the node's containerd reads them without a restart",
      )
      .option(
        "--config-path <dir>",
        `hosts.toml directory (default: the first directory of containerd's effective config_path, else ${DEFAULT_CONTAINERD_CONFIG_PATH}); given without --config, --restart and --json: only write the files (for ctr --hosts-dir), no detection`,
      )
      .option(
        "--registry <registry>",
        `${REGISTRY_HELP}: HOST[:PORT], http://HOST[:PORT] or https://HOST[:PORT] (how the real registry is reached; default https). Without it: only _default/hosts.toml, for every registry`,
        collectList,
      )
      .option("--config <file>", "the node's containerd config.toml (its imports are read too)", DEFAULT_CONTAINERD_CONFIG)
      .option("--containerd <path>", "containerd binary asked for its version; without it the config file's version decides", "containerd")
      .option("--restart", "when containerd must change config.toml to read the files: edit it minimally (backup kept) and restart containerd")
      .option("--restart-command <cmd>", "how --restart restarts containerd (run with /bin/sh -c)", "systemctl restart containerd")
      .option("--json", "print a machine-readable report (JSON) instead of lines"),
  );
  containerd.action(async (opts: CommonOptions & ContainerdInitOptions, cmd: Command) => {
    const proxy = parseProxyUrl(opts.proxy);
    const registries = parseRegistries(opts.registry ?? []);
    // Absolute: containerd's config_path and ctr --hosts-dir need one.
    const requested = opts.configPath === undefined ? undefined : resolve(opts.configPath);
    if (requested !== undefined && cmd.getOptionValueSource("config") === "default" && !opts.restart && !opts.json) {
      // Only the files, as before detection existed (tests, ctr users).
      await finish(containerdChanges(requested, proxy, registries), opts, containerdHint(requested), out);
      return;
    }
    const d = await detect(resolve(opts.config), opts.containerd);
    const p = plan(d, DEFAULT_CONTAINERD_CONFIG_PATH, requested);
    const run = { restart: opts.restart === true, restartCommand: opts.restartCommand, dryRun: opts.dryRun === true, json: opts.json === true, out };
    await carryOut(d, p, containerdChanges(p.hostsDir, proxy, registries), run);
  });

  const docker = addCommonOptions(
    init
      .command("docker")
      .description("merge the daemon into Docker's daemon.json as registry mirror and HTTP(S) proxy, keeping other settings")
      .option("--daemon-json <file>", "Docker daemon configuration file", DEFAULT_DAEMON_JSON)
      .option("--dockerd <path>", "the engine's dockerd: its version decides where the proxy goes, and it checks the new daemon.json", "dockerd")
      .option("--systemd-drop-in <file>", 'where the engine\'s proxy goes before Docker Engine 23.0 (no "proxies" in daemon.json)', DEFAULT_DROP_IN),
  );
  docker.action(async (opts: CommonOptions & DockerInitOptions) => {
    const proxy = parseProxyUrl(opts.proxy);
    const files = { daemonJson: resolve(opts.daemonJson), dockerd: opts.dockerd, systemdDropIn: resolve(opts.systemdDropIn) };
    const { changes, hint } = await dockerChanges(files, proxy);
    await finish(changes, opts, hint, out);
  });

  const podman = addCommonOptions(
    init
      .command("podman")
      .description("add the daemon as mirror in registries.conf (Podman, Buildah, Skopeo, CRI-O), in a block later runs replace")
      .option("--registries-conf <file>", "containers registries.conf (v2 format)", DEFAULT_REGISTRIES_CONF)
      .option("--registry <host>", `${REGISTRY_HELP}: a host name without scheme or port (default: ${DEFAULT_PODMAN_REGISTRIES.join(",")})`, collectList),
  );
  podman.action(async (opts: CommonOptions & { registriesConf: string; registry?: string[] }) => {
    const proxy = parseProxyUrl(opts.proxy);
    const registries = parsePodmanRegistries(opts.registry ?? [...DEFAULT_PODMAN_REGISTRIES]);
    if (registries.length === 0) throw new DamselflyError("DF_ERR_USAGE", "--registry: no registry given");
    const file = resolve(opts.registriesConf);
    const content = updateRegistriesConf(file, await readExisting(file), proxy, registries);
    await finish([{ path: file, content }], opts, PODMAN_HINT, out);
  });

  return init;
}
