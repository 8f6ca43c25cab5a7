// Config fields of s3:// and hf:// sources, the daemon's and the manager's; used by schemas.ts.
import { field } from "./config.js";
import { optionalHttpUrl } from "./schema-checks.js";

// Where s3:// and hf:// preheat URLs go: the manager lists and signs them
// itself (S3 credentials from its own AWS env or shared credentials file)
// and hands the seed peers presigned URLs only.
export function managerSourceGroup() {
  return {
    s3: {
      endpoint: field("string", "", "S3 endpoint URL for s3:// preheats (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)", {
        check: optionalHttpUrl,
        flag: true,
        legacy: "s3Endpoint",
      }),
      region: field("string", "", "S3 region for s3:// preheats (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)"),
      pathStyle: field("bool", false, "address S3 buckets in the path (MinIO, Ceph and most S3-compatible stores)"),
    },
    hf: {
      endpoint: field("string", "", "Hugging Face Hub endpoint for hf:// preheats, e.g. a mirror (default: HF_ENDPOINT, else https://huggingface.co)", {
        check: optionalHttpUrl,
        flag: true,
        legacy: "hfEndpoint",
      }),
    },
  };
}

// A daemon's defaults: for s3:// downloads it signs (callers without AWS
// credentials of their own; credentials from this daemon's AWS env/files),
// and for every `get` of its node that names no endpoint of its own
// (cli/source-defaults.ts). Only the endpoints have flags: --help stays short.
export function daemonSourceGroup() {
  return {
    s3: {
      endpoint: field("string", "", "S3 endpoint URL for s3:// downloads (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)", {
        check: optionalHttpUrl,
        flag: true,
        legacy: "s3Endpoint",
      }),
      region: field("string", "", "S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)"),
      pathStyle: field("bool", false, "address S3 buckets in the path (MinIO, Ceph and most S3-compatible stores)"),
    },
    hf: {
      endpoint: field(
        "string",
        "",
        "Hugging Face Hub endpoint (a mirror) for hf:// URLs whose client names none (default: HF_ENDPOINT, else https://huggingface.co)",
        {
          check: optionalHttpUrl,
          flag: true,
          legacy: "hfEndpoint",
        },
      ),
    },
  };
}
