// Turns hf://[models/|datasets/|spaces/]OWNER/REPO/PATH into what the swarm
// can fetch without the caller's token, as huggingface_hub resolves a file:
// a HEAD of `resolve/{revision}/{path}` (not followed) with the token says
// which commit the revision is (X-Repo-Commit), what the file is (X-Linked-Etag:
// an LFS object's sha256, else ETag: the git blob id) and, for an LFS file,
// where its bytes are (the 302 to the storage CDN, whose URL authorises
// itself). The daemon gets that CDN URL and no token; the task is keyed by
// the sha256 (digest task ID), so one set of weights in two revisions or two
// repositories is one task, and its bytes are checked against it.
import { request, type Dispatcher } from "undici";
import { DamselflyError } from "../errors.js";

export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";
const HEAD_TIMEOUT_MS = 30_000;
// Relative redirects (a renamed repository's old name) followed on the hub.
const MAX_HOPS = 5;

export interface HfLocation {
  // "" (a model), "datasets/" or "spaces/": the resolve URL's prefix.
  prefix: string;
  repo: string; // OWNER/NAME
  path: string;
}

export interface HfOptions {
  endpoint: string;
  revision: string;
  token: string;
}

export interface ResolvedHf {
  // What the daemon fetches: the CDN URL (LFS) or the resolve URL pinned to the commit.
  url: string;
  // Sent by the daemon: the token, only for a plain file of a repository that refuses anonymous reads.
  headers: Record<string, string>;
  commit: string;
  // What keys and checks the file's task: "sha256:<hex>" for an LFS file,
  // "gitsha1:<blob id>" for a plain one (the same content at any commit is
  // one task; the daemon verifies the bytes against it).
  digest: string;
  // The git blob id of a plain file, else "".
  blob: string;
  size: number;
}

export function isHfUrl(raw: string): boolean {
  return raw.startsWith("hf://");
}

export function parseHfUrl(raw: string): HfLocation {
  const bad = (why: string) => new DamselflyError("DF_ERR_INVALID_URL", `invalid URL ${JSON.stringify(raw)}: ${why}`);
  const segs = raw.slice("hf://".length).split("/");
  const kind = segs[0] ?? "";
  if (kind === "models" || kind === "datasets" || kind === "spaces") segs.shift();
  const prefix = kind === "datasets" || kind === "spaces" ? `${kind}/` : "";
  if (segs.length < 3 || segs.slice(0, 2).some((s) => s === "")) throw bad("expected hf://[models/|datasets/|spaces/]OWNER/REPO/PATH");
  const path = segs.slice(2).join("/");
  if (path === "" || path.endsWith("/")) throw bad("names a folder: give a file path, or use -r for the whole folder");
  if (segs.some((s) => s === "." || s === "..")) throw bad("'.' and '..' are not allowed in a path");
  return { prefix, repo: `${segs[0]}/${segs[1]}`, path };
}

// HF_TOKEN, else the legacy HUGGING_FACE_HUB_TOKEN.
export function hfToken(env: NodeJS.ProcessEnv = process.env): string {
  return env["HF_TOKEN"] || env["HUGGING_FACE_HUB_TOKEN"] || "";
}

export function hfEndpoint(flag: string, env: NodeJS.ProcessEnv = process.env): string {
  return (flag || env["HF_ENDPOINT"] || DEFAULT_HF_ENDPOINT).replace(/\/+$/, "");
}

function resolveUrl(endpoint: string, loc: HfLocation, revision: string): URL {
  return new URL(`${endpoint}/${loc.prefix}${loc.repo}/resolve/${encodeURIComponent(revision)}/${encodePath(loc.path)}`);
}

const encodePath = (path: string): string => path.split("/").map(encodeURIComponent).join("/");

// `answered` (the resolve URL that answered, after a rename) with the commit
// in place of the revision.
function pinnedUrl(answered: URL, loc: HfLocation, revision: string, commit: string): URL {
  const tail = `/resolve/${encodeURIComponent(revision)}/${encodePath(loc.path)}`;
  const u = new URL(answered);
  if (u.pathname.endsWith(tail)) u.pathname = `${u.pathname.slice(0, -tail.length)}/resolve/${commit}/${encodePath(loc.path)}`;
  return u;
}

function header(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

const unquote = (s: string): string => s.replace(/^W\//, "").replace(/^"|"$/g, "");

interface HeadAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  // Where the answer came from (a renamed repository's new name).
  url?: URL;
}

async function head(url: URL, token: string, raw: string, dispatcher?: Dispatcher): Promise<HeadAnswer> {
  let at = url;
  for (let hop = 0; hop <= MAX_HOPS; hop++) {
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(at, {
        method: "HEAD",
        headers: { "accept-encoding": "identity", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        headersTimeout: HEAD_TIMEOUT_MS,
        ...(dispatcher ? { dispatcher } : {}),
      });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === "DF_ERR_EGRESS_DENIED") throw DamselflyError.from(err);
      throw new DamselflyError("DF_ERR_SOURCE_UNREACHABLE", `Hugging Face Hub unreachable for ${raw} (${at.origin}): ${e.code ?? e.message}`, {
        cause: err,
        temporary: true,
      });
    }
    res.body.resume();
    const location = header(res.headers["location"]);
    // Only a relative redirect stays on the hub with the token (a renamed
    // repository); an absolute one is the CDN, the answer itself.
    if ((res.statusCode === 301 || res.statusCode === 307 || res.statusCode === 308) && location.startsWith("/")) {
      at = new URL(location, at);
      continue;
    }
    return { status: res.statusCode, headers: res.headers, url: at };
  }
  throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub redirected ${raw} more than ${MAX_HOPS} times`);
}

// The Hub's answer to a refused HEAD as a Damselfly error. Without a token,
// a missing repository and a private one both answer 401 RepoNotFound: that
// is an authentication failure (a token may be all that is missing).
export function hubError(a: HeadAnswer, raw: string, hadToken: boolean): DamselflyError {
  const code = header(a.headers["x-error-code"]);
  const message = header(a.headers["x-error-message"]) || `HTTP ${a.status}`;
  const where = `${raw}: ${message}${code ? ` (${code})` : ""}`;
  const opts = { sourceStatus: a.status };
  if (code === "GatedRepo" || ((a.status === 401 || a.status === 403) && code !== "RevisionNotFound" && code !== "EntryNotFound")) {
    const hint = hadToken ? "the token (HF_TOKEN) is not allowed to read it" : "a private or gated repository needs a token: set HF_TOKEN";
    return new DamselflyError("DF_ERR_SOURCE_AUTH", `${where}; ${hint}`, opts);
  }
  if (a.status === 404 || code === "RepoNotFound" || code === "RevisionNotFound" || code === "EntryNotFound") {
    const hint = code === "RepoNotFound" ? "; no such repository, or the token cannot see it" : "";
    return new DamselflyError("DF_ERR_SOURCE_NOT_FOUND", `${where}${hint}`, opts);
  }
  return new DamselflyError("DF_ERR_SOURCE_STATUS", `Hugging Face Hub returned HTTP ${a.status} for HEAD ${raw}: ${message}`, {
    ...opts,
    temporary: a.status >= 500 || a.status === 429,
  });
}

// `dispatcher`: an agent of the caller's choice (tests, egress policy).
export async function resolveHf(raw: string, opts: HfOptions, dispatcher?: Dispatcher): Promise<ResolvedHf> {
  const loc = parseHfUrl(raw);
  const endpoint = opts.endpoint.replace(/\/+$/, "");
  const a = await head(resolveUrl(endpoint, loc, opts.revision), opts.token, raw, dispatcher);
  if (a.status !== 200 && a.status !== 302) throw hubError(a, raw, opts.token !== "");
  const commit = header(a.headers["x-repo-commit"]);
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub sent no X-Repo-Commit for ${raw}`);
  const linked = unquote(header(a.headers["x-linked-etag"])).toLowerCase();
  if (a.status === 302) {
    const location = header(a.headers["location"]);
    if (!/^[0-9a-f]{64}$/.test(linked) || location === "") {
      throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub redirected ${raw} without an LFS sha256 (X-Linked-Etag) or Location`);
    }
    const size = Number(header(a.headers["x-linked-size"]) || -1);
    return { url: new URL(location, endpoint).href, headers: {}, commit, digest: `sha256:${linked}`, blob: "", size };
  }
  const blob = unquote(header(a.headers["etag"]));
  if (blob === "") throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub sent no ETag for ${raw}`);
  const pinned = a.url ? pinnedUrl(a.url, loc, opts.revision, commit) : resolveUrl(endpoint, loc, commit);
  // The token goes to the daemon only when the file cannot be read without it.
  const needsToken = opts.token !== "" && (await head(pinned, "", raw, dispatcher)).status !== 200;
  const headers: Record<string, string> = needsToken ? { authorization: `Bearer ${opts.token}` } : {};
  if (!/^[0-9a-f]{40}$/.test(blob))
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `Hugging Face Hub sent ETag ${JSON.stringify(blob)} for ${raw}: not a git blob id`);
  const size = Number(header(a.headers["content-length"]) || -1);
  return { url: pinned.href, headers, commit, digest: `gitsha1:${blob}`, blob, size };
}

// The task tag of a plain (non-LFS) hub file: the user's tag plus its git
// blob id. (An LFS file's task is keyed by its sha256 instead.)
export function hfTaskTag(userTag: string, blob: string): string {
  return userTag === "" ? `hf:blob=${blob}` : `${userTag}\nhf:blob=${blob}`;
}
