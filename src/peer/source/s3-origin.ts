// s3:// downloads that reach the daemon unsigned (a caller with no AWS
// credentials of its own): the daemon signs them with its own credentials
// and its s3 defaults (source.s3), checks access with a signed HEAD, and runs
// the task on the presigned URL, keyed by the object's ETag or version.
import { create } from "@bufbuild/protobuf";
import type { Dispatcher } from "undici";
import { isS3Url, type S3Options } from "../../common/s3/s3-config.js";
import { resolveS3, s3TaskTag } from "../../common/s3/s3-resolve.js";
import { DownloadSchema, type Download } from "../../protocol/index.js";

export interface S3Signing {
  options: S3Options;
  // The daemon's origin agent: the HEAD obeys its egress policy.
  dispatcher?: Dispatcher | undefined;
}

export async function resolveS3Download(d: Download, signing: S3Signing | undefined): Promise<Download> {
  if (!isS3Url(d.url)) return d;
  const s3 = await resolveS3(d.url, signing?.options ?? { endpoint: "", region: "", pathStyle: false }, process.env, signing?.dispatcher);
  return create(DownloadSchema, { ...d, url: s3.url, tag: s3TaskTag(d.tag, s3.identity) });
}
