// A Hugging Face Hub test fixture: two node:http servers on 127.0.0.1, the
// "hub" (repo info, tree listing, resolve) and a separate "CDN" that holds
// the LFS objects, as huggingface.co and its storage CDN are split. It speaks
// the parts of the Hub HTTP API a downloader uses, with the Hub's headers:
//   GET /api/{models|datasets|spaces}/{id}[/revision/{rev}]      repo info
//   GET /api/{type}s/{id}/tree/{rev}[/{path}]?recursive=&cursor=  listing,
//       paginated with `Link: <next>; rel="next"`
//   POST /api/{type}s/{id}/paths-info/{rev}                      entries of
//       the paths named in the body (JSON or form)
//   GET|HEAD /[{datasets|spaces}/]{id}/resolve/{rev}/{path}       a file:
//       plain blobs served here (Range), LFS files 302 to the CDN with
//       X-Linked-Etag / X-Linked-Size; always X-Repo-Commit and ETag.
//   GET|HEAD /[{datasets|spaces}/]{id}/raw/{rev}/{path}           git's
//       bytes (an LFS file's pointer), never redirected
// Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound)
// and X-Error-Message, with a JSON {"error": ...} body. A private repository
// answers as a missing one (401 without a token, 404 with a wrong one), as
// the Hub does so as not to reveal that it exists. A gated one shows its
// info and tree to all, and refuses its files with X-Error-Code GatedRepo
// (401 without a token, 403 with one not granted). CDN URLs are signed with a
// short expiry, so the CDN serves only what the hub redirected to. A
// renamed repository's old name answers with a relative 307 to the new one.
// Bytes served are counted per URL path on each server so tests can prove
// that peers, not the origin, carried a file.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { type HubCommit, type HubFile, type HubRepo, HubRepos, lfsPointer, pathEntry, type RepoType, treeEntries } from "./hub-repos.js";

export { diskFile, HubRepo, HubRepos, type RepoType } from "./hub-repos.js";

export interface HubRequest {
  server: "hub" | "cdn";
  method: string;
  url: string;
  status: number;
  range?: string;
  authorization?: string;
}

export interface HubFixture {
  url: string; // the hub endpoint (HF_ENDPOINT)
  cdnUrl: string;
  repos: HubRepos;
  // Body bytes sent, by URL path (no query), per server.
  hubBytes: Map<string, number>;
  cdnBytes: Map<string, number>;
  requests: HubRequest[];
  // Body bytes the CDN sent for an LFS object.
  cdnBytesFor(sha256: string): number;
  close(): Promise<void>;
}

export interface HubOptions {
  // Entries per tree page (the Hub uses 1000; small values exercise paging).
  treePageSize?: number;
  // How long a signed CDN URL stays valid, in seconds.
  cdnUrlTtlSec?: number;
  // Address both servers bind (default 127.0.0.1; the testbed gives its
  // origin namespace's address).
  host?: string;
}

const TYPES: Record<string, RepoType> = { models: "model", datasets: "dataset", spaces: "space" };

function sendError(res: http.ServerResponse, status: number, code: string | undefined, message: string): void {
  const body = Buffer.from(JSON.stringify({ error: message }));
  if (code) res.setHeader("X-Error-Code", code);
  res.setHeader("X-Error-Message", message);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": body.length });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function bearer(req: http.IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  return m?.[1];
}

// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`; null when unsatisfiable,
// undefined when there is no (usable) Range header.
function parseRange(header: string | undefined, size: number): [number, number] | null | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header ?? "");
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? null : [start, end];
}

// Sends `data` (bytes, or a file on disk streamed with backpressure) honouring
// Range, counting the body bytes under `key`.
function sendBody(req: http.IncomingMessage, res: http.ServerResponse, data: Buffer | HubFile, counts: Map<string, number>, key: string): void {
  res.setHeader("Accept-Ranges", "bytes");
  const size = Buffer.isBuffer(data) ? data.length : data.size;
  const range = parseRange(req.headers.range, size);
  if (range === null) {
    res.writeHead(416, { "Content-Range": `bytes */${size}`, "Content-Length": 0 });
    res.end();
    return;
  }
  const [start, end] = range ?? [0, size - 1];
  if (range) res.setHeader("Content-Range", `bytes ${start}-${end}/${size}`);
  res.writeHead(range ? 206 : 200, { "Content-Type": "application/octet-stream", "Content-Length": end + 1 - start });
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const add = (n: number) => counts.set(key, (counts.get(key) ?? 0) + n);
  const bytes = Buffer.isBuffer(data) ? data : data.data;
  if (bytes) {
    add(end + 1 - start);
    res.end(bytes.subarray(start, end + 1));
    return;
  }
  const file = createReadStream((data as HubFile).diskPath!, { start, end, highWaterMark: 1024 * 1024 });
  // Counted as read: backpressure bounds what is read but not yet sent.
  file.on("data", (b) => add(b.length));
  file.on("error", () => res.destroy());
  res.on("close", () => file.destroy());
  file.pipe(res);
}

class HubHandler {
  readonly secret = randomBytes(16);
  hubUrl = "";
  cdnUrl = "";

  constructor(
    readonly repos: HubRepos,
    readonly hubBytes: Map<string, number>,
    readonly cdnBytes: Map<string, number>,
    readonly opts: Required<Omit<HubOptions, "host">>,
  ) {}

  // Finds the repository and checks the token; answers the error itself.
  private repo(req: http.IncomingMessage, res: http.ServerResponse, type: RepoType, id: string): HubRepo | undefined {
    const repo = this.repos.get(type, id);
    const token = bearer(req);
    if (repo?.canRead(token)) return repo;
    const to = repo ? undefined : this.repos.renamedTo(type, id);
    if (to) {
      // The Hub answers a renamed repository's old name with a relative 307
      // to the same path under the new name (huggingface_hub follows relative
      // redirects only, for this).
      const path = (req.url ?? "/").replace(new RegExp(`/${id.replace(/[.+]/g, "\\$&")}(?=[/?]|$)`), `/${to}`);
      res.writeHead(307, { Location: path, "Content-Length": 0 });
      res.end();
      return undefined;
    }
    // Unauthenticated: 401 whether the repo is missing or private; an
    // authenticated caller without access gets 404. Same code either way.
    sendError(res, token ? 404 : 401, "RepoNotFound", "Repository not found");
    return undefined;
  }

  private commit(res: http.ServerResponse, repo: HubRepo, rev: string): HubCommit | undefined {
    const c = repo.resolve(rev);
    if (!c) sendError(res, 404, "RevisionNotFound", `Invalid rev id: ${rev}`);
    return c;
  }

  handleHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? "/", this.hubUrl);
    const segs = u.pathname.split("/").slice(1).map(decodeURIComponent);
    if (segs[0] === "api" && TYPES[segs[1]] && segs.length >= 4) return this.api(req, res, u, segs);
    if (req.method !== "GET" && req.method !== "HEAD") return sendError(res, 405, undefined, "Method not allowed");
    // /{owner}/{name}/resolve/... is a model; /datasets/... and /spaces/... name their type.
    const type = TYPES[segs[0]] && /^(resolve|raw)$/.test(segs[3]) ? TYPES[segs[0]] : "model";
    const rest = type === "model" ? segs : segs.slice(1);
    if ((rest[2] === "resolve" || rest[2] === "raw") && rest.length >= 5) {
      const path = rest.slice(4).join("/");
      return this.resolveFile(req, res, type, `${rest[0]}/${rest[1]}`, rest[3], path, rest[2] === "raw");
    }
    sendError(res, 404, undefined, "Sorry, we can't find the page you are looking for.");
  }

  private api(req: http.IncomingMessage, res: http.ServerResponse, u: URL, segs: string[]): void {
    const type = TYPES[segs[1]];
    const id = `${segs[2]}/${segs[3]}`;
    const repo = this.repo(req, res, type, id);
    if (!repo) return;
    if (segs.length === 4 || (segs[4] === "revision" && segs.length === 6)) {
      const c = this.commit(res, repo, segs[5] ?? "HEAD");
      if (c) this.json(res, this.info(repo, c));
    } else if (segs[4] === "tree" && segs.length >= 6) {
      const c = this.commit(res, repo, segs[5]);
      if (c) this.tree(res, u, c, segs.slice(6).join("/"));
    } else if (segs[4] === "paths-info" && segs.length === 6 && req.method === "POST") {
      const c = this.commit(res, repo, segs[5]);
      if (c) this.pathsInfo(req, res, c);
    } else {
      sendError(res, 404, undefined, "Sorry, we can't find the page you are looking for.");
    }
  }

  private json(res: http.ServerResponse, value: unknown, headers: Record<string, string> = {}): void {
    const body = Buffer.from(JSON.stringify(value));
    res.writeHead(200, { ...headers, "Content-Type": "application/json; charset=utf-8", "Content-Length": body.length });
    res.end(res.req.method === "HEAD" ? undefined : body);
  }

  private info(repo: HubRepo, c: HubCommit): Record<string, unknown> {
    return {
      _id: createHash("sha1").update(HubRepos.key(repo.type, repo.id)).digest("hex").slice(0, 24),
      id: repo.id,
      author: repo.id.split("/")[0],
      sha: c.sha,
      private: repo.isPrivate,
      gated: repo.gated,
      disabled: false,
      lastModified: c.date.toISOString(),
      createdAt: c.date.toISOString(),
      downloads: 0,
      likes: 0,
      tags: [],
      siblings: [...c.files.keys()].sort().map((rfilename) => ({ rfilename })),
    };
  }

  // A page of the entries under `dir`, with a Link to the next page.
  private tree(res: http.ServerResponse, u: URL, c: HubCommit, dir: string): void {
    const all = treeEntries(c, dir, u.searchParams.get("recursive") === "true");
    if (all.length === 0 && dir !== "") {
      return sendError(res, 404, "EntryNotFound", `${dir} does not exist on "${c.sha}"`);
    }
    const cursor = u.searchParams.get("cursor");
    const start = cursor ? Number(Buffer.from(cursor, "base64url").toString()) : 0;
    const page = all.slice(start, start + this.opts.treePageSize);
    const headers: Record<string, string> = {};
    if (start + page.length < all.length) {
      const next = new URL(u.pathname + u.search, this.hubUrl);
      next.searchParams.set("cursor", Buffer.from(String(start + page.length)).toString("base64url"));
      headers.Link = `<${next.href}>; rel="next"`;
    }
    this.json(res, page, headers);
  }

  // POST paths-info/{rev}: the entries of the paths asked for that exist.
  // huggingface.js sends JSON, huggingface_hub a form (paths=a&paths=b).
  private pathsInfo(req: http.IncomingMessage, res: http.ServerResponse, c: HubCommit): void {
    const chunks: Buffer[] = [];
    req.on("data", (b: Buffer) => chunks.push(b));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      let paths: string[];
      try {
        paths = req.headers["content-type"]?.includes("json")
          ? ((JSON.parse(body) as { paths?: string[] }).paths ?? [])
          : new URLSearchParams(body).getAll("paths");
      } catch {
        return sendError(res, 400, undefined, "Invalid JSON body");
      }
      this.json(
        res,
        paths.map((p) => pathEntry(c, p)).filter((e) => e !== undefined),
      );
    });
  }

  private resolveFile(req: http.IncomingMessage, res: http.ServerResponse, type: RepoType, id: string, rev: string, path: string, raw: boolean): void {
    const repo = this.repo(req, res, type, id);
    const c = repo && this.commit(res, repo, rev);
    if (!repo || !c) return;
    const token = bearer(req);
    if (!repo.canDownload(token)) {
      const what = `Access to ${type} ${repo.id} is restricted`;
      return token
        ? sendError(res, 403, "GatedRepo", `${what} and you are not in the authorized list.`)
        : sendError(res, 401, "GatedRepo", `${what}. You must have access to it and be authenticated to access it.`);
    }
    res.setHeader("X-Repo-Commit", c.sha);
    const f = c.files.get(path);
    if (!f) return sendError(res, 404, "EntryNotFound", "Entry not found");
    const key = new URL(req.url ?? "/", this.hubUrl).pathname;
    res.setHeader("ETag", `"${f.oid}"`);
    // `raw` is what git stores: the bytes, or an LFS file's pointer.
    if (raw) return sendBody(req, res, f.lfs ? lfsPointer(f.lfs.sha256, f.size) : f, this.hubBytes, key);
    if (!f.lfs) return sendBody(req, res, f, this.hubBytes, key);
    res.setHeader("X-Linked-Etag", `"${f.lfs.sha256}"`);
    res.setHeader("X-Linked-Size", String(f.size));
    const location = this.signedCdnUrl(f.lfs.sha256, path);
    const body = Buffer.from(`Found. Redirecting to ${location}`);
    res.writeHead(302, { Location: location, "Content-Type": "text/plain; charset=utf-8", "Content-Length": body.length });
    res.end(req.method === "HEAD" ? undefined : body);
  }

  private signature(sha256: string, expires: string): string {
    return createHmac("sha256", this.secret).update(`${sha256}:${expires}`).digest("hex");
  }

  private signedCdnUrl(sha256: string, path: string): string {
    const expires = String(Math.floor(Date.now() / 1000) + this.opts.cdnUrlTtlSec);
    const u = new URL(`/repos/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`, this.cdnUrl);
    u.searchParams.set("response-content-disposition", `attachment; filename="${path.split("/").pop()}"`);
    u.searchParams.set("Expires", expires);
    u.searchParams.set("Signature", this.signature(sha256, expires));
    return u.href;
  }

  // The CDN: like S3 behind CloudFront, it checks the URL's signature and
  // expiry (never the hub token) and serves the object with Range.
  handleCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? "/", this.cdnUrl);
    const sha256 = /^\/repos\/[0-9a-f]{2}\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(u.pathname)?.[1];
    const expires = u.searchParams.get("Expires") ?? "";
    const f = sha256 ? this.repos.lfsObject(sha256) : undefined;
    if (!sha256 || !f) return sendError(res, 404, undefined, "NoSuchKey");
    if (u.searchParams.get("Signature") !== this.signature(sha256, expires) || Number(expires) * 1000 < Date.now()) {
      return sendError(res, 403, undefined, "AccessDenied");
    }
    // An S3-style ETag (md5), not the sha256: a client that reads the ETag
    // after following the redirect gets this one.
    res.setHeader("ETag", `"${f.lfs?.md5 ?? createHash("md5").update(f.data!).digest("hex")}"`);
    sendBody(req, res, f, this.cdnBytes, u.pathname);
  }
}

function listen(handler: http.RequestListener, log: HubRequest[], name: "hub" | "cdn", host: string) {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    res.on("finish", () =>
      log.push({
        server: name,
        method: req.method ?? "",
        url: req.url ?? "",
        status: res.statusCode,
        range: req.headers.range,
        authorization: req.headers.authorization,
      }),
    );
    handler(req, res);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  return new Promise<{ url: string; close: () => Promise<void> }>((resolve) => {
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      const close = () =>
        new Promise<void>((done) => {
          for (const s of sockets) s.destroy();
          server.close(() => done());
        });
      resolve({ url: `http://${host}:${port}`, close });
    });
  });
}

export async function startHub(opts: HubOptions = {}): Promise<HubFixture> {
  const repos = new HubRepos();
  const hubBytes = new Map<string, number>();
  const cdnBytes = new Map<string, number>();
  const requests: HubRequest[] = [];
  const h = new HubHandler(repos, hubBytes, cdnBytes, {
    treePageSize: opts.treePageSize ?? 1000,
    cdnUrlTtlSec: opts.cdnUrlTtlSec ?? 3600,
  });
  const host = opts.host ?? "127.0.0.1";
  const hub = await listen((req, res) => h.handleHub(req, res), requests, "hub", host);
  const cdn = await listen((req, res) => h.handleCdn(req, res), requests, "cdn", host);
  h.hubUrl = hub.url;
  h.cdnUrl = cdn.url;
  return {
    url: hub.url,
    cdnUrl: cdn.url,
    repos,
    hubBytes,
    cdnBytes,
    requests,
    cdnBytesFor: (sha256) => cdnBytes.get(`/repos/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`) ?? 0,
    close: async () => {
      await hub.close();
      await cdn.close();
    },
  };
}
