// `damselfly init containerd` on a node: detect the node's containerd
// (version, config file and imports, layout, effective config_path, pull
// path), decide whether the hosts.toml files are read as they are (no
// restart: containerd reads hosts directories on every pull) or what has to
// change in config.toml first (a restart: containerd reads config.toml only
// at start), and say which.
import { CONTAINERD_22_DEFAULT_CONFIG_PATH, binaryVersion, type ConfigFile, loadConfigFiles, type Version, versionFromConfig } from "./containerd-config.js";
import { type KeyEdit, tableHeader } from "./containerd-edit.js";
import { type ConfigPathState, type CriImageConfig, criImageConfig, effectiveConfigPath, type Layout, type PullPath, pullPath } from "./containerd-state.js";

export interface Detection {
  version: Version;
  configFile: string;
  configExists: boolean;
  files: ConfigFile[];
  configVersion: number;
  layout: Layout;
  cri: CriImageConfig;
  configPath: ConfigPathState;
  pull: PullPath;
}

export interface Issue {
  code: "config-path-unset" | "transfer-service-path-list" | "deprecated-registry-conflict" | "hosts-dir-not-read" | "no-config-file";
  message: string;
  // What fixes it: a config.toml edit (then a restart), or by hand.
  fix: string;
}

export interface FileEdit extends KeyEdit {
  file: string;
}

export interface Plan {
  // Where the hosts.toml files go.
  hostsDir: string;
  issues: Issue[];
  edits: FileEdit[];
  // The edits make containerd read the hosts.toml files after a restart.
  restartNeeded: boolean;
  // An issue no edit of ours can fix (the user must act).
  blocked: boolean;
}

export async function detect(configFile: string, containerdBin: string): Promise<Detection> {
  const files = await loadConfigFiles(configFile);
  const main = files.find((f) => f.path === configFile);
  // No file: containerd runs on its defaults; the file we would create gets
  // the layout of the binary's major version.
  const bin = await binaryVersion(containerdBin);
  const configVersion = main?.version ?? (bin && bin.major >= 2 ? 3 : 2);
  const version = bin ?? versionFromConfig(configVersion, main !== undefined);
  const cri = criImageConfig(files, configFile, configVersion);
  return {
    version,
    configFile,
    configExists: main !== undefined,
    files,
    configVersion,
    layout: cri.layout,
    cri,
    configPath: effectiveConfigPath(version, cri),
    pull: pullPath(version, cri),
  };
}

// requested: --config-path, when given with --config (the dir must be one
// containerd reads, or the one we make it read).
export function plan(d: Detection, defaultHostsDir: string, requested: string | undefined): Plan {
  const issues: Issue[] = [];
  const edits: FileEdit[] = [];
  let blocked = false;
  const cp = d.configPath;
  const hostsDir = requested ?? cp.dirs[0] ?? defaultHostsDir;
  // After our edits, the config_path value containerd will use.
  let dirs = cp.dirs;
  if (!d.configExists) {
    issues.push({
      code: "no-config-file",
      message: `${d.configFile} does not exist: containerd runs on its defaults, which ${cp.source === "default" ? "read a path list the transfer service cannot use" : "read no hosts.toml directory for CRI pulls"}`,
      fix: `create ${d.configFile} with config_path = ${JSON.stringify(hostsDir)} and restart containerd`,
    });
  }
  if (cp.source === "unset") {
    const where = `${tableHeader(d.cri.registryTable)} in ${d.cri.registryFile}`;
    if (d.cri.mirrors || d.cri.configsTls) {
      blocked = true;
      issues.push({
        code: "deprecated-registry-conflict",
        message: `config_path is not set and ${where} uses the deprecated ${d.cri.mirrors ? "mirrors" : "configs.<host>.tls"} table, which containerd refuses together with config_path`,
        fix: `move those settings into hosts.toml files under ${hostsDir} (see containerd's docs/hosts.md), remove them, set config_path = ${JSON.stringify(hostsDir)} and restart containerd`,
      });
    } else {
      issues.push({
        code: "config-path-unset",
        message: `config_path is not set in ${where}: containerd ${d.version.text} then reads no hosts.toml for CRI pulls, and reads config.toml only when it starts`,
        fix: `set config_path = ${JSON.stringify(hostsDir)} there and restart containerd`,
      });
      edits.push({ file: d.cri.registryFile, table: d.cri.registryTable, key: "config_path", value: hostsDir });
      dirs = [hostsDir];
    }
  } else if (!dirs.includes(hostsDir)) {
    blocked = true;
    issues.push({
      code: "hosts-dir-not-read",
      message: `containerd reads hosts.toml from ${dirs.join(", ")} (config_path ${cp.source === "default" ? "default" : "set"}), not from ${hostsDir}`,
      fix: `leave out --config-path (the files then go to ${dirs[0]}), or set config_path = ${JSON.stringify(hostsDir)} by hand and restart containerd`,
    });
  }
  if (d.pull.transferService && dirs.length > 1 && !blocked) {
    const raw = dirs === cp.dirs ? cp.raw : dirs.join(":");
    issues.push({
      code: "transfer-service-path-list",
      message:
        `${d.pull.reason}; it takes config_path ${JSON.stringify(raw)}${raw === CONTAINERD_22_DEFAULT_CONFIG_PATH && cp.source === "default" ? " (the 2.2+ default)" : ""} ` +
        "as one directory, so it ignores every hosts.toml (containerd issues #12415, #12636)",
      fix: `set use_local_image_pull = true in ${tableHeader(d.cri.imagesTable)} (the local pull reads each directory) and restart containerd`,
    });
    edits.push({ file: d.cri.imagesFile, table: d.cri.imagesTable, key: "use_local_image_pull", value: true });
  }
  return { hostsDir, issues, edits, restartNeeded: edits.length > 0 || !d.configExists, blocked };
}
