// The files of a Hugging Face Hub repository or folder at one commit: the
// revision is pinned first (so every file comes from the same commit), then
// the tree is listed recursively, following the Hub's `Link: rel="next"`
// pages, bounded in files and pages. Shared by `get -r` and the manager's
// preheat jobs, so both see the same set.
import { request, type Dispatcher } from "undici";
import { DamselflyError } from "../errors.js";
import { readTextCapped } from "../streams.js";

const MAX_PAGES = 1_000;
const API_TIMEOUT_MS = 30_000;
// One page of the tree (the Hub sends 1,000 entries, a few hundred KiB).
const MAX_PAGE_BYTES = 16 * 1024 * 1024;

export interface HfTreeEntry {
  type: string;
  path: string;
  size?: number;
  oid?: string;
  lfs?: { size?: number; oid?: string };
}

export interface HfFolder {
  kind: string; // "models", "datasets" or "spaces"
  urlPrefix: string; // "", "datasets/" or "spaces/"
  repo: string;
  folder: string; // "" for the whole repository
}

export interface HfListOptions {
  endpoint: string;
  revision: string;
  token: string;
  // More files than this is DF_ERR_USAGE.
  maxFiles: number;
  dispatcher?: Dispatcher | undefined;
}

export function parseHfFolder(raw: string): HfFolder {
  const segs = raw.slice("hf://".length).split("/");
  const first = segs[0] ?? "";
  const kind = first === "datasets" || first === "spaces" ? first : "models";
  if (first === "models" || first === "datasets" || first === "spaces") segs.shift();
  while (segs.length > 2 && segs[segs.length - 1] === "") segs.pop();
  if (segs.length < 2 || segs.slice(0, 2).some((s) => s === "") || segs.some((s) => s === "." || s === "..")) {
    throw new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(raw)}: expected hf://[models/|datasets/|spaces/]OWNER/REPO[/FOLDER]`);
  }
  return { kind, urlPrefix: kind === "models" ? "" : `${kind}/`, repo: `${segs[0]}/${segs[1]}`, folder: segs.slice(2).join("/") };
}

async function hubJson(url: string, token: string, dispatcher: Dispatcher | undefined): Promise<{ body: unknown; next: string }> {
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
      headersTimeout: API_TIMEOUT_MS,
      bodyTimeout: API_TIMEOUT_MS,
      ...(dispatcher ? { dispatcher } : {}),
    });
  } catch (err) {
    if ((err as { code?: string }).code === "DF_ERR_EGRESS_DENIED") throw DamselflyError.from(err);
    throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `Hugging Face Hub unreachable (${new URL(url).origin})`, { cause: err, temporary: true });
  }
  if (res.statusCode !== 200) {
    const code = String(res.headers["x-error-code"] ?? "");
    res.body.resume();
    const where = `${url}: HTTP ${res.statusCode}${code ? ` (${code})` : ""}`;
    if (res.statusCode === 401 || res.statusCode === 403)
      throw new DamselflyError("DF_ERR_SOURCE_AUTH", `${where}; set HF_TOKEN to a token allowed to read it`);
    if (res.statusCode === 404) throw new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", where);
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", where, { temporary: res.statusCode >= 500 });
  }
  const link = String(res.headers["link"] ?? "");
  const next = /<([^>]+)>;\s*rel="next"/.exec(link)?.[1] ?? "";
  const text = await readTextCapped(res.body, MAX_PAGE_BYTES, `Hugging Face Hub answer ${url}`);
  try {
    return { body: JSON.parse(text) as unknown, next };
  } catch {
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub sent no JSON for ${url}`);
  }
}

// The commit the revision names, then every file under the folder at it.
export async function listHf(loc: HfFolder, opts: HfListOptions): Promise<{ commit: string; entries: HfTreeEntry[] }> {
  const { endpoint, token, dispatcher } = opts;
  const rev = encodeURIComponent(opts.revision || "main");
  const info = (await hubJson(`${endpoint}/api/${loc.kind}/${loc.repo}/revision/${rev}`, token, dispatcher)).body as { sha?: string };
  const commit = info.sha ?? "";
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub gave no commit for ${loc.repo}@${rev}`);
  const folder = loc.folder === "" ? "" : `/${loc.folder.split("/").map(encodeURIComponent).join("/")}`;
  let url = `${endpoint}/api/${loc.kind}/${loc.repo}/tree/${commit}${folder}?recursive=true`;
  const entries: HfTreeEntry[] = [];
  for (let page = 0; url !== "" && page < MAX_PAGES; page++) {
    const { body, next } = await hubJson(url, token, dispatcher);
    if (!Array.isArray(body)) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub sent a tree that is not a list for ${loc.repo}`);
    for (const e of body as HfTreeEntry[]) if (e.type === "file") entries.push(e);
    if (entries.length > opts.maxFiles) {
      throw new DamselflyError(
        "DF_ERR_USAGE",
        `${loc.repo} has more than ${opts.maxFiles} files under ${loc.folder || "/"}: narrow it with a folder or --include`,
      );
    }
    url = next === "" ? "" : new URL(next, endpoint).href;
  }
  return { commit, entries };
}
