// What a node's containerd does with registry hosts (hosts.toml), read from
// its config file(s) and its version. The facts encoded here come from
// containerd's own sources and docs (docs/cri/config.md, docs/hosts.md):
// - config version 1 (containerd 1.x) keeps the CRI plugin at [plugins.cri],
//   version 2 at [plugins."io.containerd.grpc.v1.cri"], version 3
//   (containerd 2.x) splits it: images at [plugins."io.containerd.cri.v1.images"].
//   containerd 2.x migrates a version 1/2 file's CRI registry table.
// - config_path unset: containerd 1.x-2.1 read no hosts directory for CRI
//   pulls (a restart after setting it is the only way in). 2.2+ on Linux
//   default it to "/etc/containerd/certs.d:/etc/docker/certs.d" unless the
//   deprecated registry.mirrors table is set (2.2.0/2.2.1 only when the key is
//   absent, or empty in a version 2 file).
// - registry.mirrors or configs.<host>.tls together with config_path: the
//   CRI plugin refuses to load.
// - containerd 2.1+ pulls CRI images through the transfer service unless
//   [plugins."io.containerd.cri.v1.images"] use_local_image_pull = true, or a
//   setting the transfer service lacks makes it fall back to the local pull.
//   The transfer service takes config_path as ONE directory: a path list (the
//   2.2+ default, EKS's setting) makes it ignore every hosts.toml, silently.
import { readdir, readFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, normalize } from "node:path";
import { parse } from "smol-toml";
import { DamselflyError } from "../../common/errors.js";
import { fileError } from "./files.js";
import { runTool } from "./run-tool.js";

export const DEFAULT_CONTAINERD_CONFIG = "/etc/containerd/config.toml";
export const CONTAINERD_22_DEFAULT_CONFIG_PATH = "/etc/containerd/certs.d:/etc/docker/certs.d";
// Bounds on what a hostile or broken config can make us read.
const MAX_FILES = 64;
const MAX_FILE_BYTES = 4 << 20;

export type Table = Record<string, unknown>;

export interface ConfigFile {
  path: string;
  text: string;
  doc: Table;
  // The file's `version =` (0: none).
  version: number;
}

export interface Version {
  major: number;
  minor: number;
  patch: number;
  // "binary": `containerd --version`; "config": no binary, only the config
  // file's version (3: 2.x; 1 or 2: 1.x or 2.x); "none": no file, no binary.
  source: "binary" | "config" | "none";
  text: string;
}

const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);

export function tableAt(doc: Table, path: readonly string[]): Table | undefined {
  let t: unknown = doc;
  for (const k of path) {
    if (!isTable(t)) return undefined;
    t = t[k];
  }
  return isTable(t) ? t : undefined;
}

// "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3",
// "containerd containerd.io v2.1.5 fcd43222...": the third field.
export function parseContainerdVersion(out: string): Version | undefined {
  const field = out.trim().split(/\s+/)[2] ?? "";
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(field);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), source: "binary", text: `${m[1]}.${m[2]}.${m[3]}` };
}

// The version the binary reports, or undefined when there is none (an init
// container without the host's binary) or it says something else.
export async function binaryVersion(bin: string): Promise<Version | undefined> {
  const r = await runTool(bin, ["--version"], { timeoutMs: 10_000 });
  return r.code === 0 ? parseContainerdVersion(r.stdout) : undefined;
}

export function versionFromConfig(configVersion: number, exists: boolean): Version {
  if (!exists) return { major: 0, minor: 0, patch: 0, source: "none", text: "unknown" };
  // Version 3 files exist since 2.0; 2.x also reads version 1 and 2 files.
  const text = `unknown (config version ${configVersion || 1}${configVersion >= 3 ? ": 2.x" : ""})`;
  return { major: configVersion >= 3 ? 2 : 1, minor: 0, patch: 0, source: "config", text };
}

export const atLeast = (v: Version, major: number, minor: number): boolean => v.major > major || (v.major === major && v.minor >= minor);

async function readConfigFile(path: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw fileError("read", path, err);
  }
  if (text.length > MAX_FILE_BYTES) throw new DamselflyError("DF_ERR_CONFIG", `${path}: larger than ${MAX_FILE_BYTES} bytes; not a containerd config`);
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    throw new DamselflyError("DF_ERR_CONFIG", `${path}: not valid TOML (${(err as Error).message.split("\n")[0]}); containerd cannot load it either`, {
      cause: err,
    });
  }
  const version = typeof doc.version === "number" ? doc.version : 0;
  return { path, text, doc, version };
}

// containerd's import rules: relative to the importing file's directory, a
// "*" makes it a glob (we match it within the last path component, the
// conf.d/*.toml form), sorted like filepath.Glob.
async function resolveImports(parent: string, imports: unknown): Promise<string[]> {
  if (!Array.isArray(imports)) return [];
  const out: string[] = [];
  for (const raw of imports) {
    if (typeof raw !== "string") continue;
    const p = normalize(isAbsolute(raw) ? raw : join(dirname(parent), raw));
    if (!/[*?]/.test(p)) {
      out.push(p);
      continue;
    }
    if (/[*?]/.test(dirname(p)))
      throw new DamselflyError("DF_ERR_CONFIG", `${parent}: import ${JSON.stringify(raw)}: a wildcard is supported in the file name only`);
    const re = new RegExp(
      `^${basename(p)
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, ".*")
        .replace(/\?/g, ".")}$`,
    );
    const names = await readdir(dirname(p)).catch(() => [] as string[]);
    out.push(
      ...names
        .filter((n) => re.test(n))
        .sort()
        .map((n) => join(dirname(p), n)),
    );
  }
  return out;
}

// The main file and every file it imports, in containerd's load order (later
// files override earlier ones). [] when the main file does not exist.
export async function loadConfigFiles(main: string): Promise<ConfigFile[]> {
  const files: ConfigFile[] = [];
  const seen = new Set<string>();
  const pending = [main];
  while (pending.length > 0) {
    const path = pending.shift()!;
    if (seen.has(path)) continue;
    seen.add(path);
    if (seen.size > MAX_FILES) throw new DamselflyError("DF_ERR_CONFIG", `${main}: more than ${MAX_FILES} imported files`);
    const f = await readConfigFile(path);
    if (!f) {
      if (path === main) return [];
      continue;
    }
    files.push(f);
    pending.push(...(await resolveImports(path, f.doc.imports)));
  }
  return files;
}
