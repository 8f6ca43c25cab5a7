// containerd (1.6+) registry hosts: one certs.d/<registry>/hosts.toml per
// registry naming the Damselfly daemon as the host to pull and resolve
// through. containerd then sends /v2/... requests to the daemon with
// ?ns=<registry>; the X-Damselfly-Registry header also tells the daemon the
// scheme and address of the real registry, which ns= alone cannot.
import { join } from "node:path";
import type { FileChange } from "./files.js";
import type { ProxyUrl, Registry } from "./endpoints.js";
import { tomlString, tomlStringArray } from "./toml.js";

export const DEFAULT_CONTAINERD_CONFIG_PATH = "/etc/containerd/certs.d";

// The directory containerd looks up for hosts it has no own entry for.
const DEFAULT_HOST_DIR = "_default";

// docker.io is a name, not a host: its API lives at registry-1.docker.io
// (the same mapping containerd applies when no hosts.toml exists).
export function registryServer(r: Registry): string {
  return r.name === "docker.io" ? "https://registry-1.docker.io" : `${r.scheme}://${r.name}`;
}

export function hostsToml(proxy: ProxyUrl, registry: Registry | undefined): string {
  const host = `host.${tomlString(proxy.url)}`;
  const lines: string[] = [];
  if (registry) lines.push(`server = ${tomlString(registryServer(registry))}`, "");
  lines.push(`[${host}]`, `  capabilities = ${tomlStringArray(["pull", "resolve"])}`);
  if (registry) lines.push(`  [${host}.header]`, `    X-Damselfly-Registry = ${tomlStringArray([registryServer(registry)])}`);
  return lines.join("\n") + "\n";
}

// With no registries, only _default: every registry goes through the daemon,
// which routes by the ns= query parameter.
export function containerdChanges(configPath: string, proxy: ProxyUrl, registries: readonly Registry[]): FileChange[] {
  if (registries.length === 0) return [{ path: join(configPath, DEFAULT_HOST_DIR, "hosts.toml"), content: hostsToml(proxy, undefined) }];
  return registries.map((r) => ({ path: join(configPath, r.name, "hosts.toml"), content: hostsToml(proxy, r) }));
}

export function containerdHint(configPath: string): string {
  return (
    `containerd: set config_path = ${tomlString(configPath)} under [plugins."io.containerd.grpc.v1.cri".registry] in /etc/containerd/config.toml and restart containerd; ctr users pass --hosts-dir ${configPath}\n` +
    `(containerd 2.x with config version 3: the section is [plugins."io.containerd.cri.v1.images".registry])\n`
  );
}
