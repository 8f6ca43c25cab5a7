// What task.json holds for one task.
export interface TaskMeta {
  id: string;
  // Signature query parameters already removed: never persist credentials.
  url: string;
  // What else went into the task ID, so the task can be fetched again
  // (repaired) without the original request. Headers are never stored.
  tag: string;
  application: string;
  filteredQueryParams: string[];
  // "sha256:<hex>" when the task ID is the content digest (OCI blobs); absent
  // in tasks written before this field existed.
  digestTaskId?: string;
  // The whole content was hashed and matched digestTaskId.
  digestVerified?: boolean;
  // What the content hashed to while it downloaded ("sha256:<hex>"): a URL
  // task's requester's digest, or a content-addressed task's own (when this
  // process checked it), so `get` need not hash it again.
  contentDigest?: string;
  // The data file when its pieces were last all checked (data-stamp.ts).
  dataStamp?: string | undefined;
  // Milliseconds after the last access the disk GC removes the task,
  // instead of the daemon's task TTL (`cache import --ttl`).
  ttlMs?: number;
  // -1 while unknown (chunked origin response still in progress).
  contentLength: number;
  pieceLength: number;
  done: boolean;
  createdAt: number;
  lastAccessAt: number;
}
