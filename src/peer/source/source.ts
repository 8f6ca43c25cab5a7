// What the download path needs from an origin: a GET of the whole object or a
// byte range. http(s) is served by HttpSource; an s3:// object reaches the
// daemon as a presigned https URL (common/s3/s3-resolve.ts), so the secret
// stays on the node that signed it.
import type { SourceRange, SourceResponse } from "./http-source.js";

export type { SourceRange, SourceResponse } from "./http-source.js";

export interface Source {
  fetch(url: string, headers: Record<string, string>, range: SourceRange | undefined, signal?: AbortSignal): Promise<SourceResponse>;
  close(): Promise<void>;
}
