// In-memory repositories for the Hugging Face Hub test fixture (hub.ts):
// commits with whole trees, branches and tags pointing at them, and files
// stored either as plain git blobs or as LFS objects (sha256). The object ids
// are computed as git and git-lfs compute them, so a client that checks a
// blob oid or an LFS sha256 against the bytes finds them consistent.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export type RepoType = "model" | "dataset" | "space";

export interface HubFile {
  path: string;
  size: number;
  // The bytes in memory, or (diskPath) a large LFS file served from disk.
  data?: Buffer;
  diskPath?: string;
  // Git blob id of what git stores: the bytes, or the LFS pointer for an LFS file.
  oid: string;
  // md5: the CDN's ETag, kept for disk files (hashed once, not per request).
  lfs?: { sha256: string; pointerSize: number; md5?: string };
}

export interface HubCommit {
  sha: string;
  files: Map<string, HubFile>;
  date: Date;
}

// A file on disk, always LFS (benchmarks: GiB-sized weights never held in
// memory); diskFile() makes one.
export interface DiskFileInput {
  diskPath: string;
  size: number;
  sha256: string;
  md5: string;
}

// A file given to commit(): bytes (a plain git blob), bytes marked as LFS, or a disk file.
export type FileInput = Buffer | string | { data: Buffer | string; lfs: boolean } | DiskFileInput;

// Hashes a file on disk once, streaming, for commit().
export async function diskFile(diskPath: string): Promise<DiskFileInput> {
  const sha = createHash("sha256");
  const md5 = createHash("md5");
  let size = 0;
  for await (const chunk of createReadStream(diskPath, { highWaterMark: 4 * 1024 * 1024 })) {
    sha.update(chunk as Buffer);
    md5.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { diskPath, size, sha256: sha.digest("hex"), md5: md5.digest("hex") };
}

export function gitBlobOid(data: Buffer): string {
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

export function lfsPointer(sha256: string, size: number): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
}

function makeFile(path: string, input: FileInput): HubFile {
  if (typeof input === "object" && "diskPath" in input) {
    const pointer = lfsPointer(input.sha256, input.size);
    const lfs = { sha256: input.sha256, pointerSize: pointer.length, md5: input.md5 };
    return { path, size: input.size, diskPath: input.diskPath, oid: gitBlobOid(pointer), lfs };
  }
  const lfs = typeof input === "object" && !Buffer.isBuffer(input) && input.lfs;
  const raw = typeof input === "object" && !Buffer.isBuffer(input) ? input.data : input;
  const data = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
  if (!lfs) return { path, size: data.length, data, oid: gitBlobOid(data) };
  const sha256 = createHash("sha256").update(data).digest("hex");
  const pointer = lfsPointer(sha256, data.length);
  return { path, size: data.length, data, oid: gitBlobOid(pointer), lfs: { sha256, pointerSize: pointer.length } };
}

export class HubRepo {
  readonly commits = new Map<string, HubCommit>();
  readonly branches = new Map<string, string>();
  readonly tags = new Map<string, string>();
  readonly defaultBranch = "main";
  // Tokens that may read this repository: checked when it is private, and
  // for file contents when it is gated.
  readonly tokens = new Set<string>();
  // A gated repository shows its info and tree to anyone, its files only to
  // the tokens granted access.
  gated: false | "auto" | "manual" = false;
  private seq = 0;

  constructor(
    readonly type: RepoType,
    public id: string,
    public isPrivate = false,
  ) {}

  // Commits `files` on `branch` (created if new). `replace` starts from an
  // empty tree; otherwise the branch's current tree is kept and updated.
  // A null input deletes that path. Returns the commit sha.
  commit(files: Record<string, FileInput | null>, opts: { branch?: string; replace?: boolean } = {}): string {
    const branch = opts.branch ?? this.defaultBranch;
    const parent = this.branches.get(branch);
    const tree = new Map(opts.replace || !parent ? [] : this.commits.get(parent)?.files);
    for (const [path, input] of Object.entries(files)) {
      if (input === null) tree.delete(path);
      else tree.set(path, makeFile(path, input));
    }
    const sha = createHash("sha1")
      .update(`${this.type}/${this.id}:${parent ?? ""}:${this.seq++}`)
      .update([...tree.values()].map((f) => `${f.path}\0${f.oid}`).join("\n"))
      .digest("hex");
    this.commits.set(sha, { sha, files: tree, date: new Date(Date.UTC(2026, 0, 1, 0, this.seq)) });
    this.branches.set(branch, sha);
    return sha;
  }

  tag(name: string, rev: string): void {
    const c = this.resolve(rev);
    if (!c) throw new Error(`hub fixture: no revision ${rev} in ${this.id}`);
    this.tags.set(name, c.sha);
  }

  // A revision is a branch, a tag, a full commit sha, or HEAD (the default
  // branch), as the Hub accepts them; `refs/heads/X` and `refs/tags/X` too.
  resolve(rev: string): HubCommit | undefined {
    const name = rev === "HEAD" ? this.defaultBranch : rev;
    const sha =
      this.branches.get(name.replace(/^refs\/heads\//, "")) ??
      this.tags.get(name.replace(/^refs\/tags\//, "")) ??
      (/^[0-9a-f]{40}$/.test(name) ? name : undefined);
    return sha === undefined ? undefined : this.commits.get(sha);
  }

  canRead(token: string | undefined): boolean {
    return !this.isPrivate || (token !== undefined && this.tokens.has(token));
  }

  canDownload(token: string | undefined): boolean {
    return this.canRead(token) && (!this.gated || (token !== undefined && this.tokens.has(token)));
  }
}

// Repositories by "models/owner/name", "datasets/owner/name", "spaces/owner/name".
export class HubRepos {
  private readonly repos = new Map<string, HubRepo>();
  private readonly renamed = new Map<string, string>();

  static key(type: RepoType, id: string): string {
    return `${type}s/${id}`;
  }

  create(type: RepoType, id: string, opts: { private?: boolean; gated?: "auto" | "manual"; tokens?: string[] } = {}): HubRepo {
    const repo = new HubRepo(type, id, opts.private ?? false);
    repo.gated = opts.gated ?? false;
    for (const t of opts.tokens ?? []) repo.tokens.add(t);
    this.repos.set(HubRepos.key(type, id), repo);
    return repo;
  }

  get(type: RepoType, id: string): HubRepo | undefined {
    return this.repos.get(HubRepos.key(type, id));
  }

  // Renames a repository; the old name then redirects to the new one.
  rename(type: RepoType, from: string, to: string): void {
    const repo = this.get(type, from);
    if (!repo) throw new Error(`hub fixture: no repository ${from}`);
    this.repos.delete(HubRepos.key(type, from));
    repo.id = to;
    this.repos.set(HubRepos.key(type, to), repo);
    this.renamed.set(HubRepos.key(type, from), to);
  }

  // The new name of a renamed repository.
  renamedTo(type: RepoType, id: string): string | undefined {
    return this.renamed.get(HubRepos.key(type, id));
  }

  // An LFS object by sha256 (its bytes or disk path), from any commit of any
  // repository (the CDN stores content, not paths).
  lfsObject(sha256: string): HubFile | undefined {
    for (const repo of this.repos.values()) {
      for (const c of repo.commits.values()) {
        for (const f of c.files.values()) if (f.lfs?.sha256 === sha256) return f;
      }
    }
    return undefined;
  }
}

// A tree entry as the Hub's tree and paths-info APIs give it.
export interface TreeEntry {
  type: "file" | "directory";
  oid: string;
  size: number;
  path: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

function fileEntry(f: HubFile): TreeEntry {
  const entry: TreeEntry = { type: "file", oid: f.oid, size: f.size, path: f.path };
  if (f.lfs) entry.lfs = { oid: f.lfs.sha256, size: f.size, pointerSize: f.lfs.pointerSize };
  return entry;
}

function dirEntry(c: HubCommit, path: string): TreeEntry {
  const oid = createHash("sha1").update(`tree:${c.sha}:${path}`).digest("hex");
  return { type: "directory", oid, size: 0, path };
}

// The entries under `dir` ("" is the root): its children, or everything below
// it when recursive, directories included, in path order.
export function treeEntries(c: HubCommit, dir: string, recursive: boolean): TreeEntry[] {
  const prefix = dir === "" ? "" : `${dir}/`;
  const entries = new Map<string, TreeEntry>();
  for (const f of c.files.values()) {
    if (!f.path.startsWith(prefix)) continue;
    const parts = f.path.slice(prefix.length).split("/");
    for (let i = 1; i < parts.length && (recursive || i === 1); i++) {
      const path = prefix + parts.slice(0, i).join("/");
      entries.set(path, dirEntry(c, path));
    }
    if (recursive || parts.length === 1) entries.set(f.path, fileEntry(f));
  }
  return [...entries.values()].sort((a, b) => a.path.localeCompare(b.path));
}

// The entry of one path: a file, a directory, or undefined.
export function pathEntry(c: HubCommit, path: string): TreeEntry | undefined {
  const f = c.files.get(path);
  if (f) return fileEntry(f);
  return [...c.files.keys()].some((p) => p.startsWith(`${path}/`)) ? dirEntry(c, path) : undefined;
}
