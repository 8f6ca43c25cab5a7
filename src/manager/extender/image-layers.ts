import type { Dispatcher } from "undici";
import { imageManifestUrl } from "../../common/image-ref.js";
import { blobDownload, downloadTaskId } from "../../protocol/index.js";
import { resolveImage } from "../jobs/image-resolver.js";
import type { Layer } from "./locality.js";

// A pod's image reference -> its layers for one platform, each with the task
// ID the daemons' registry mirror stores the blob under (the same Download a
// preheat job builds: job-runner.ts), so the schedulers' answers line up.
// Reached directly at the reference's registry, anonymously (or with the
// registry's bearer challenge): private images need credentials this does not
// have yet, and such images simply score 0.
export async function resolveImageLayers(image: string, platform: string, signal: AbortSignal, dispatcher?: Dispatcher): Promise<Layer[]> {
  const resolved = await resolveImage(imageManifestUrl(image), {}, platform, { signal, ...(dispatcher ? { dispatcher } : {}) });
  return resolved.blobs.map((b) => ({
    digest: b.digest,
    size: b.size,
    taskId: downloadTaskId(blobDownload({ url: b.url, headers: {}, digest: b.digest })),
  }));
}
