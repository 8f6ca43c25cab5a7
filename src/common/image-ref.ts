import { DamselflyError } from "./errors.js";

// "registry.example.com:5000/team/app:1.2" -> its manifest URL. Names without
// a registry are Docker Hub's (library/ for one-word names); loopback
// registries are reached over plain http.
export function imageManifestUrl(ref: string): string {
  const m = /^(?:([^/]+)\/)?([a-z0-9]+(?:[._/-][a-z0-9]+)*?)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$/.exec(ref);
  if (!m) throw new DamselflyError("DF_ERR_USAGE", `not an image reference: ${JSON.stringify(ref)} (expected [registry/]repository[:tag|@digest])`);
  let [, first, repo] = m as unknown as [string, string | undefined, string];
  const tag = m[3];
  const digest = m[4];
  let registry: string;
  if (first !== undefined && (first.includes(".") || first.includes(":") || first === "localhost")) registry = first;
  else {
    registry = "registry-1.docker.io";
    if (first !== undefined) repo = `${first}/${repo}`;
    else repo = `library/${repo}`;
  }
  if (registry === "docker.io" || registry === "index.docker.io") registry = "registry-1.docker.io";
  const host = registry.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  const plain = host === "localhost" || host === "::1" || /^127\./.test(host);
  return `${plain ? "http" : "https"}://${registry}/v2/${repo}/manifests/${digest ?? tag ?? "latest"}`;
}
