// Podman, Buildah, Skopeo and CRI-O (containers/image): registries.conf gets
// one [[registry]] per registry with the daemon as its mirror, inside a
// marked block that later runs replace, so the rest of the file stays the
// user's. The mirror is <proxy host:port>/<registry>: containers/image then
// asks the daemon for /v2/<registry>/<repo>/..., and the daemon routes by that
// first path component.
import { DamselflyError } from "../../common/errors.js";
import { parseRegistries, type ProxyUrl, type Registry } from "./endpoints.js";
import { readStringAssignment, tomlString } from "./toml.js";

export const DEFAULT_REGISTRIES_CONF = "/etc/containers/registries.conf";
export const DEFAULT_PODMAN_REGISTRIES = ["docker.io"] as const;

export const BLOCK_BEGIN = "# BEGIN damselfly (managed by damselfly init podman)";
export const BLOCK_END = "# END damselfly";

export function parsePodmanRegistries(raws: readonly string[]): Registry[] {
  for (const raw of raws) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw.trim())) {
      throw new DamselflyError("DF_ERR_USAGE", `invalid --registry ${JSON.stringify(raw)}: podman takes registry host names without a scheme (e.g. docker.io)`);
    }
  }
  const registries = parseRegistries(raws);
  for (const r of registries) {
    // A port (or an IPv6 address) cannot be a path component of the mirror
    // location: "127.0.0.1:65001/registry.example:5000" is not an image name.
    if (r.hasPort || r.name.startsWith("[")) {
      throw new DamselflyError(
        "DF_ERR_USAGE",
        `cannot mirror ${r.name} for podman: the mirror location <proxy>/<registry> cannot name a registry with a port or an IPv6 address; ` +
          `make it the daemon's default registry instead (damselfly daemon --registry-mirror) and leave it out of --registry`,
      );
    }
    // The daemon takes the first path component for a registry only when it
    // looks like one (Docker's rule); "/v2/myreg/app/..." is repository myreg/app.
    if (r.name !== "localhost" && !r.name.includes(".")) {
      throw new DamselflyError(
        "DF_ERR_USAGE",
        `cannot mirror ${r.name} for podman: a registry name in the mirror path needs a dot or must be "localhost"; ` +
          `make it the daemon's default registry instead (damselfly daemon --registry-mirror) and leave it out of --registry`,
      );
    }
  }
  return registries;
}

export function managedBlock(proxy: ProxyUrl, registries: readonly Registry[]): string {
  const tables = registries.map((r) =>
    [
      "[[registry]]",
      `prefix = ${tomlString(r.name)}`,
      `location = ${tomlString(r.name)}`,
      "",
      "[[registry.mirror]]",
      `location = ${tomlString(`${proxy.hostPort}/${r.name}`)}`,
      // Plain HTTP to the local daemon; an https proxy is verified as usual.
      ...(proxy.scheme === "http" ? ["insecure = true"] : []),
    ].join("\n"),
  );
  return `${BLOCK_BEGIN}\n${tables.join("\n\n")}\n${BLOCK_END}\n`;
}

function invalid(file: string, why: string): DamselflyError {
  return new DamselflyError("DF_ERR_CONFIG", `${file}: ${why} (the file was not changed)`);
}

interface Block {
  // The file's lines, each with its line break.
  lines: string[];
  // Line indexes of the BEGIN and END markers, if the file has the block.
  begin?: number;
  end?: number;
}

function findBlock(file: string, text: string): Block {
  const lines = text.split(/(?<=\n)/);
  const begins = lines.flatMap((l, i) => (l.trim() === BLOCK_BEGIN ? [i] : []));
  const ends = lines.flatMap((l, i) => (l.trim() === BLOCK_END ? [i] : []));
  if (begins.length === 0 && ends.length === 0) return { lines };
  if (begins.length !== 1 || ends.length !== 1 || ends[0] < begins[0]) {
    throw invalid(file, `expected exactly one "${BLOCK_BEGIN}" line followed by one "${BLOCK_END}" line; repair or remove the damselfly block by hand`);
  }
  return { lines, begin: begins[0], end: ends[0] };
}

// Refuses files the block would not work in: the v1 format (podman refuses
// to mix it with [[registry]] tables) and a [[registry]] for a prefix the
// block defines (containers/image then uses only the first entry for the
// prefix, so the mirror would be ignored without a word).
function checkOutside(file: string, b: Block, registries: readonly Registry[]): void {
  const wanted = new Set(registries.map((r) => r.name));
  interface Entry {
    line: number;
    prefix?: string;
    location?: string;
  }
  const entries: Entry[] = [];
  let entry: Entry | undefined;
  b.lines.forEach((line, i) => {
    if (b.begin !== undefined && b.end !== undefined && i >= b.begin && i <= b.end) return;
    const t = line.trim();
    if (/^\[\s*registries\.(search|insecure|block)\s*\]/.test(t)) {
      throw invalid(
        file,
        `line ${i + 1} uses the v1 format (${t}), which podman cannot mix with the [[registry]] tables damselfly writes; convert the file to the v2 format first`,
      );
    }
    if (/^\[\[\s*registry\s*\]\]\s*(#.*)?$/.test(t)) {
      entry = { line: i + 1 };
      entries.push(entry);
    } else if (t.startsWith("[")) {
      entry = undefined;
    } else if (entry) {
      entry.prefix ??= readStringAssignment(t, "prefix");
      entry.location ??= readStringAssignment(t, "location");
    }
  });
  for (const e of entries) {
    // Without a prefix, podman uses the location as the prefix.
    const prefix = (e.prefix ?? e.location)?.toLowerCase();
    if (prefix !== undefined && wanted.has(prefix)) {
      throw invalid(
        file,
        `line ${e.line}: a [[registry]] for ${JSON.stringify(prefix)} already exists outside the damselfly block; with two entries for one prefix ` +
          `podman uses only one (the damselfly mirror could be silently ignored): remove or merge that entry by hand, or leave ${prefix} out of --registry`,
      );
    }
  }
}

// existing: the file's text (undefined: no file). Returns the new text: the
// block replaced where it was, else appended; every other byte kept.
export function updateRegistriesConf(file: string, existing: string | undefined, proxy: ProxyUrl, registries: readonly Registry[]): string {
  const block = managedBlock(proxy, registries);
  const text = existing ?? "";
  const b = findBlock(file, text);
  checkOutside(file, b, registries);
  if (b.begin !== undefined && b.end !== undefined) {
    return b.lines.slice(0, b.begin).join("") + block + b.lines.slice(b.end + 1).join("");
  }
  const sep = text === "" || text.endsWith("\n\n") ? "" : text.endsWith("\n") ? "\n" : "\n\n";
  return text + sep + block;
}

export const PODMAN_HINT = "Podman reads registries.conf on each run; CRI-O: systemctl restart crio\n";
