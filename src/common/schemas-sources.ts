// Config fields of s3:// and hf:// sources, the daemon's and the manager's; used by schemas.ts.
import { field } from "./config.js";
import { optionalHttpUrl } from "./schema-checks.js";

// The s3 and hub defaults of a component; `use` says what they serve in its
// reference docs. Only the endpoints have flags: --help stays short.
function sourceGroup(use: { s3: string; hf: string }) {
  return {
    s3: {
      endpoint: field("string", "", `S3 endpoint URL for ${use.s3} (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)`, {
        check: optionalHttpUrl,
        flag: true,
        legacy: "s3Endpoint",
      }),
      region: field("string", "", `S3 region for ${use.s3} (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)`),
      pathStyle: field("bool", false, "address S3 buckets in the path (MinIO, Ceph and most S3-compatible stores)"),
    },
    hf: {
      endpoint: field("string", "", `Hugging Face Hub endpoint (a mirror) for ${use.hf} (default: HF_ENDPOINT, else https://huggingface.co)`, {
        check: optionalHttpUrl,
        flag: true,
        legacy: "hfEndpoint",
      }),
    },
  };
}

// Where s3:// and hf:// preheat URLs go: the manager lists and signs them
// itself (S3 credentials from its own AWS env or shared credentials file)
// and hands the seed peers presigned URLs only.
export function managerSourceGroup() {
  return sourceGroup({ s3: "s3:// preheats", hf: "hf:// preheats" });
}

// A daemon's defaults: for s3:// downloads it signs (callers without AWS
// credentials of their own; credentials from this daemon's AWS env/files),
// and for every `get` of its node that names no endpoint of its own
// (cli/source-defaults.ts).
export function daemonSourceGroup() {
  return sourceGroup({ s3: "s3:// downloads", hf: "hf:// URLs whose client names none" });
}
