import { create } from "@bufbuild/protobuf";
import { taskId as computeTaskId } from "../common/task-id.js";
import { DownloadSchema, type Download } from "./gen/damselfly/common/v1/common_pb.js";

// How a Download maps to its task ID, and how an OCI blob is described as a
// Download. The daemon's registry mirror and the manager's preheat jobs both
// use these, so a preheated layer is the task the next pull asks for.

export function downloadTaskId(d: Download): string {
  return computeTaskId({
    url: d.url,
    tag: d.tag,
    application: d.application,
    filteredQueryParams: d.filteredQueryParams,
    pieceLength: Number(d.pieceLength),
    digest: d.digestTaskId ? d.digest : undefined,
  });
}

// A content-addressed object (an OCI blob): its digest and its registry are
// the task ID input, whatever repository or signed URL it is fetched through
// (a blob is shared only among clients of one registry: common/task-id.ts).
export function blobDownload(obj: { url: string; headers: Record<string, string>; digest?: string | undefined }): Download {
  return create(DownloadSchema, { url: obj.url, headers: obj.headers, digest: obj.digest ?? "", digestTaskId: obj.digest !== undefined });
}
