// The effective registry settings of a node's containerd: where its CRI
// plugin looks for hosts.toml (config_path) and whether its image pulls read
// them (the transfer service of containerd 2.1+). See containerd-config.ts
// for the containerd behaviour this encodes.
import { atLeast, CONTAINERD_22_DEFAULT_CONFIG_PATH, type ConfigFile, type Table, tableAt, type Version } from "./containerd-config.js";

export const CRI_V1 = "cri";
export const CRI_V2 = "io.containerd.grpc.v1.cri";
export const IMAGES_V3 = "io.containerd.cri.v1.images";

export type Layout = "v1" | "v2" | "v3";

export interface Setting<T> {
  value: T;
  // The file and table it was read from.
  file: string;
  table: string[];
}

export interface CriImageConfig {
  layout: Layout;
  // Where config_path goes (table path) and the file to edit.
  registryTable: string[];
  registryFile: string;
  configPath?: string;
  mirrors: boolean;
  configsTls: boolean;
  configsAuth: boolean;
  auths: boolean;
  // The images plugin table of containerd 2.x, where use_local_image_pull goes.
  imagesTable: string[];
  imagesFile: string;
  useLocalImagePull?: boolean;
  disableSnapshotAnnotations?: boolean;
  discardUnpackedLayers?: boolean;
  maxConcurrentDownloads?: number;
  imagePullWithSyncFs?: boolean;
}

export interface ConfigPathState {
  // The dirs containerd searches, in order; [] when none.
  dirs: string[];
  raw: string;
  source: "config" | "default" | "unset";
}

export interface PullPath {
  transferService: boolean;
  // Why the local pull (which reads every config_path dir) is used, or why
  // the transfer service is assumed.
  reason: string;
}

export function layoutOf(configVersion: number): Layout {
  return configVersion >= 3 ? "v3" : configVersion === 2 ? "v2" : "v1";
}

// A plugin's table as containerd merges imports: the last file defining the
// plugin replaces it whole. A version 1 file names the CRI plugin "cri".
function pluginTable(files: readonly ConfigFile[], main: string, id: string): { table?: Table; file: string; path: string[] } {
  let found: { table?: Table; file: string; path: string[] } = { file: main, path: ["plugins", id] };
  for (const f of files) {
    const own = f.version <= 1 && id === CRI_V2 ? CRI_V1 : id;
    const t = tableAt(f.doc, ["plugins", own]);
    if (t) found = { table: t, file: f.path, path: ["plugins", own] };
  }
  return found;
}

const nonEmpty = (v: unknown): boolean => typeof v === "object" && v !== null && Object.keys(v).length > 0;
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === "boolean" ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

// mainVersion: the main file's `version =` (0: none, read as 1).
export function criImageConfig(files: readonly ConfigFile[], main: string, mainVersion: number): CriImageConfig {
  const layout = layoutOf(mainVersion);
  const images = pluginTable(files, main, IMAGES_V3);
  const cri = pluginTable(files, main, CRI_V2);
  // Version 1/2 files keep registry and pull settings in the CRI plugin
  // (containerd 2.x migrates them, replacing the images plugin's own).
  const src = layout === "v3" ? images : cri;
  const s = src.table ?? {};
  const containerdT = layout === "v3" ? s : (tableAt(s, ["containerd"]) ?? {});
  const registry = tableAt(s, ["registry"]) ?? {};
  const configs = tableAt(registry, ["configs"]) ?? {};
  const img = images.table ?? {};
  return {
    layout,
    registryTable: [...src.path, "registry"],
    registryFile: src.file,
    configPath: str(registry.config_path),
    mirrors: nonEmpty(registry.mirrors),
    configsTls: Object.values(configs).some((c) => nonEmpty((c as Table | undefined)?.tls)),
    configsAuth: Object.values(configs).some((c) => nonEmpty((c as Table | undefined)?.auth)),
    auths: nonEmpty(registry.auths),
    imagesTable: images.path,
    imagesFile: images.file,
    useLocalImagePull: bool(img.use_local_image_pull),
    disableSnapshotAnnotations: bool(containerdT.disable_snapshot_annotations ?? (layout === "v3" ? undefined : img.disable_snapshot_annotations)),
    discardUnpackedLayers: bool(containerdT.discard_unpacked_layers ?? (layout === "v3" ? undefined : img.discard_unpacked_layers)),
    maxConcurrentDownloads: num(s.max_concurrent_downloads),
    imagePullWithSyncFs: bool(s.image_pull_with_sync_fs),
  };
}

export function splitConfigPath(raw: string): string[] {
  return raw.split(":").filter((d) => d !== "");
}

export function effectiveConfigPath(v: Version, c: CriImageConfig): ConfigPathState {
  if (c.configPath) return { dirs: splitConfigPath(c.configPath), raw: c.configPath, source: "config" };
  // 2.2.0 and 2.2.1 default an explicitly empty value only in a version 2 file.
  const early22 = v.major === 2 && v.minor === 2 && v.patch < 2;
  const defaulted = c.configPath === undefined || !early22 || c.layout !== "v3";
  if (v.source === "binary" && atLeast(v, 2, 2) && !c.mirrors && defaulted) {
    return { dirs: splitConfigPath(CONTAINERD_22_DEFAULT_CONFIG_PATH), raw: CONTAINERD_22_DEFAULT_CONFIG_PATH, source: "default" };
  }
  return { dirs: [], raw: "", source: "unset" };
}

// The settings that make containerd 2.1+ fall back to the local pull, in its
// own order (the first found is the one it logs).
function localPullReason(c: CriImageConfig): string | undefined {
  if (c.useLocalImagePull === true) return "use_local_image_pull = true";
  if (c.disableSnapshotAnnotations === false) return "disable_snapshot_annotations = false falls back to the local pull";
  if (c.discardUnpackedLayers === true) return "discard_unpacked_layers = true falls back to the local pull";
  if (c.mirrors) return "registry.mirrors falls back to the local pull";
  if (c.configsTls || c.configsAuth) return "registry.configs falls back to the local pull";
  if (c.auths) return "registry.auths falls back to the local pull";
  if (c.maxConcurrentDownloads !== undefined && c.maxConcurrentDownloads !== 3) return "max_concurrent_downloads != 3 falls back to the local pull";
  if (c.imagePullWithSyncFs === true) return "image_pull_with_sync_fs = true falls back to the local pull";
  return undefined;
}

export function pullPath(v: Version, c: CriImageConfig): PullPath {
  // Without the binary, any file may be read by containerd 2.1+ (it migrates
  // version 1 and 2 files): assume the transfer service, whose miss is silent.
  const maybe21 = v.source === "binary" ? atLeast(v, 2, 1) : true;
  if (!maybe21) return { transferService: false, reason: `containerd ${v.text} pulls CRI images itself (no transfer service before 2.1)` };
  const local = localPullReason(c);
  if (local) return { transferService: false, reason: local };
  return {
    transferService: true,
    reason:
      v.source === "binary"
        ? `containerd ${v.text} pulls CRI images through the transfer service (use_local_image_pull is not set)`
        : "containerd version unknown (no binary to ask): assuming 2.1+, which pulls CRI images through the transfer service",
  };
}
