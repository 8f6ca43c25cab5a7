// The one table of every error Damselfly raises, each with a stable code
// (errors.ts holds the error class that carries them). The code travels
// across process boundaries (RPC metadata, HTTP headers) so a failure seen by
// a seed peer reaches the `get` user with the same meaning.

export const ExitCode = {
  OK: 0,
  GENERIC: 1,
  USAGE: 2,
  CONFIG: 3,
  ORIGIN_STATUS: 4,
  UNAVAILABLE: 5,
  INTEGRITY: 6,
  TIMEOUT: 7,
  STORAGE: 8,
  AUTH: 9,
  NOT_FOUND: 10,
  RESTART_REQUIRED: 11,
} as const;

// Subset of gRPC status codes we use; the numeric values match gRPC/Connect.
export const RpcCode = {
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;

interface ErrorSpec {
  readonly message: string;
  // When users meet it: the reference (docs/reference/errors.md) prints this.
  readonly when: string;
  readonly exitCode: number;
  readonly httpStatus: number;
  readonly rpcCode: number;
}

// The table of codes. Never reuse or rename a code: users grep logs for them.
export const ERROR_CODES = {
  DF_ERR_INTERNAL: { when: "unexpected internal failure", message: "internal error", exitCode: ExitCode.GENERIC, httpStatus: 500, rpcCode: RpcCode.Internal },
  DF_ERR_USAGE: { when: "invalid command-line usage", message: "invalid usage", exitCode: ExitCode.USAGE, httpStatus: 400, rpcCode: RpcCode.InvalidArgument },
  DF_ERR_INVALID_URL: {
    when: "URL is not absolute http(s), nor s3://BUCKET/KEY",
    message: "invalid URL",
    exitCode: ExitCode.USAGE,
    httpStatus: 400,
    rpcCode: RpcCode.InvalidArgument,
  },
  DF_ERR_INVALID_DIGEST: {
    when: "digest is not `sha256:`/`sha512:`/`crc32:` with the right length",
    message: "invalid digest",
    exitCode: ExitCode.USAGE,
    httpStatus: 400,
    rpcCode: RpcCode.InvalidArgument,
  },
  DF_ERR_INVALID_REQUEST: {
    when: "a server received a malformed request",
    message: "invalid request",
    exitCode: ExitCode.USAGE,
    httpStatus: 400,
    rpcCode: RpcCode.InvalidArgument,
  },
  DF_ERR_CONFIG: {
    when: "invalid configuration (flag, env or YAML)",
    message: "invalid configuration",
    exitCode: ExitCode.CONFIG,
    httpStatus: 500,
    rpcCode: RpcCode.FailedPrecondition,
  },
  DF_ERR_SOURCE_STATUS: {
    when: "origin answered 4xx/5xx",
    message: "origin returned an error status",
    exitCode: ExitCode.ORIGIN_STATUS,
    httpStatus: 502,
    rpcCode: RpcCode.FailedPrecondition,
  },
  DF_ERR_SOURCE_UNREACHABLE: {
    when: "origin could not be reached or the response broke off",
    message: "origin unreachable",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 502,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_SOURCE_PROTOCOL: {
    when: "origin response unusable (size changed, bad Content-Range, too many redirects)",
    message: "origin response is unusable",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 502,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_SOURCE_AUTH: {
    when: "the object store or model hub refused the credentials (wrong key, secret or token, no permission; a private or gated repository without a token), or none were found",
    message: "object store refused the credentials",
    exitCode: ExitCode.AUTH,
    httpStatus: 403,
    rpcCode: RpcCode.PermissionDenied,
  },
  DF_ERR_SOURCE_NOT_FOUND: {
    when: "the object store has no such bucket or key, or the model hub no such repository, revision or file",
    message: "no such object",
    exitCode: ExitCode.NOT_FOUND,
    httpStatus: 404,
    rpcCode: RpcCode.NotFound,
  },
  DF_ERR_DAEMON_UNAVAILABLE: {
    when: "`get` cannot reach the daemon, or lost it mid-download (killed, crashed, restarted)",
    message: "daemon unreachable",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_SCHEDULER_UNAVAILABLE: {
    when: "no scheduler reachable (and back-to-source disabled)",
    message: "scheduler unreachable",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_NO_PARENT: {
    when: "no peer can serve the task and back-to-source is disabled",
    message: "no peer can serve the task and back-to-source is not allowed",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_BACK_TO_SOURCE_LIMIT: {
    when: "too many peers of the task are already at the origin",
    message: "back-to-source limit reached for this task",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.ResourceExhausted,
  },
  DF_ERR_UPLOAD_BUSY: {
    when: "a parent's upload slots are all busy (HTTP 503; the child tries elsewhere)",
    message: "upload slots exhausted",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.ResourceExhausted,
  },
  DF_ERR_PARENT_FAILED: {
    when: "a parent failed while serving a piece",
    message: "parent failed to serve a piece",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 502,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_DIGEST_MISMATCH: {
    when: "the file does not match `--digest`",
    message: "digest mismatch",
    exitCode: ExitCode.INTEGRITY,
    httpStatus: 502,
    rpcCode: RpcCode.DataLoss,
  },
  DF_ERR_PIECE_CORRUPT: {
    when: "a piece failed its integrity check (CRC-32, or SHA-256 against the signed digest with TLS)",
    message: "piece failed its integrity check",
    exitCode: ExitCode.INTEGRITY,
    httpStatus: 502,
    rpcCode: RpcCode.DataLoss,
  },
  DF_ERR_TIMEOUT: { when: "timed out", message: "timed out", exitCode: ExitCode.TIMEOUT, httpStatus: 504, rpcCode: RpcCode.DeadlineExceeded },
  DF_ERR_CANCELLED: {
    when: "cancelled (Ctrl-C, daemon shutdown)",
    message: "cancelled",
    exitCode: ExitCode.GENERIC,
    httpStatus: 499,
    rpcCode: RpcCode.Canceled,
  },
  DF_ERR_STORAGE_FULL: {
    when: "no space left on device",
    message: "no space left on device",
    exitCode: ExitCode.STORAGE,
    httpStatus: 507,
    rpcCode: RpcCode.ResourceExhausted,
  },
  DF_ERR_STORAGE_IO: { when: "storage I/O error", message: "storage I/O error", exitCode: ExitCode.STORAGE, httpStatus: 500, rpcCode: RpcCode.Internal },
  DF_ERR_OUTPUT: {
    when: "the output path cannot be written",
    message: "cannot write output",
    exitCode: ExitCode.STORAGE,
    httpStatus: 500,
    rpcCode: RpcCode.FailedPrecondition,
  },
  DF_ERR_TASK_NOT_FOUND: {
    when: "a peer does not hold the task (HTTP 404 on the data plane)",
    message: "task not found",
    exitCode: ExitCode.ORIGIN_STATUS,
    httpStatus: 404,
    rpcCode: RpcCode.NotFound,
  },
  DF_ERR_PIECE_NOT_FOUND: {
    when: "a peer does not hold the piece (HTTP 404 on the data plane)",
    message: "piece not available",
    exitCode: ExitCode.ORIGIN_STATUS,
    httpStatus: 404,
    rpcCode: RpcCode.NotFound,
  },
  DF_ERR_SHUTTING_DOWN: {
    when: "the daemon is shutting down (SIGTERM) and takes no new downloads",
    message: "the daemon is shutting down",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_TASK_IN_USE: {
    when: "`cache rm`: the task is being downloaded, read or uploaded (retry, or `--force`)",
    message: "task is in use",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 409,
    rpcCode: RpcCode.FailedPrecondition,
  },
  // Zero trust (docs/operations/security.md).
  DF_ERR_TRUST_INVALID: {
    when: "a signed record (back-to-source grant, piece digest, task geometry) or the certificate behind it does not verify against the cluster CA",
    message: "untrusted or invalid signature",
    exitCode: ExitCode.INTEGRITY,
    httpStatus: 502,
    rpcCode: RpcCode.DataLoss,
  },
  DF_ERR_PEER_ROLE: {
    when: "the caller's certificate is missing, from another CA, or of a role that may not make this call",
    message: "caller's certificate does not allow this",
    exitCode: ExitCode.AUTH,
    httpStatus: 403,
    rpcCode: RpcCode.PermissionDenied,
  },
  DF_ERR_INSECURE_BIND: {
    when: "a component without --tls-ca/--tls-cert/--tls-key was asked to listen on a non-loopback address (give certificates, or --insecure)",
    message: "refusing to serve without TLS on a non-loopback address",
    exitCode: ExitCode.CONFIG,
    httpStatus: 500,
    rpcCode: RpcCode.FailedPrecondition,
  },
  DF_ERR_EGRESS_DENIED: {
    when: "the origin (or a redirect hop) resolves to an address the egress policy denies (link-local and cloud metadata by default)",
    message: "origin address denied by the egress policy",
    exitCode: ExitCode.AUTH,
    httpStatus: 403,
    rpcCode: RpcCode.PermissionDenied,
  },
  DF_ERR_GEOMETRY_INVALID: {
    when: "a task's content or piece length is out of bounds (piece length 512 KiB-64 MiB, content length under the configured maximum) or changed after the task's first answer",
    message: "invalid task geometry",
    exitCode: ExitCode.INTEGRITY,
    httpStatus: 502,
    rpcCode: RpcCode.InvalidArgument,
  },
  DF_ERR_LIMIT_EXCEEDED: {
    when: "a caller exceeded a server-side cap (hosts, tasks or peers per registrant or in all, connections per address)",
    message: "limit exceeded",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 429,
    rpcCode: RpcCode.ResourceExhausted,
  },
  DF_ERR_BODY_TOO_LARGE: {
    when: "a request body where the server takes none (data plane, metrics, the proxy's own answers) or over its limit (HTTP 413); the connection is closed",
    message: "request body too large",
    exitCode: ExitCode.USAGE,
    httpStatus: 413,
    rpcCode: RpcCode.ResourceExhausted,
  },
  DF_ERR_PROXY_DENIED: {
    when: "the proxy does not relay this: a method it does not forward, a CONNECT port not in proxy.connectPorts, or a loopback or own address not in proxy.allowLocal (HTTP 403)",
    message: "denied by the proxy policy",
    exitCode: ExitCode.AUTH,
    httpStatus: 403,
    rpcCode: RpcCode.PermissionDenied,
  },
  // Manager (control plane).
  DF_ERR_UNAUTHENTICATED: {
    when: "manager: no, unknown or expired session / access token, or a wrong password (HTTP 401)",
    message: "authentication required",
    exitCode: ExitCode.AUTH,
    httpStatus: 401,
    rpcCode: RpcCode.Unauthenticated,
  },
  DF_ERR_PERMISSION_DENIED: {
    when: "manager: the role or the token's scopes do not allow this (HTTP 403)",
    message: "permission denied",
    exitCode: ExitCode.AUTH,
    httpStatus: 403,
    rpcCode: RpcCode.PermissionDenied,
  },
  DF_ERR_SIGNIN_THROTTLED: {
    when: "manager: too many failed sign-ins for this account or from this address, or too many sign-ins at once (HTTP 429, retry after Retry-After seconds)",
    message: "too many sign-in attempts",
    exitCode: ExitCode.AUTH,
    httpStatus: 429,
    rpcCode: RpcCode.ResourceExhausted,
  },
  DF_ERR_NOT_FOUND: {
    when: "manager: no such route, user, cluster, job... (HTTP 404)",
    message: "not found",
    exitCode: ExitCode.ORIGIN_STATUS,
    httpStatus: 404,
    rpcCode: RpcCode.NotFound,
  },
  DF_ERR_CONFLICT: {
    when: "manager: a user, role or cluster of that name exists (HTTP 409)",
    message: "already exists",
    exitCode: ExitCode.USAGE,
    httpStatus: 409,
    rpcCode: RpcCode.AlreadyExists,
  },
  DF_ERR_DATABASE: {
    when: "manager: the database cannot be opened or migrated",
    message: "database error",
    exitCode: ExitCode.GENERIC,
    httpStatus: 500,
    rpcCode: RpcCode.Internal,
  },
  DF_ERR_MANAGER_UNAVAILABLE: {
    when: "the manager cannot be reached",
    message: "manager unreachable",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 503,
    rpcCode: RpcCode.Unavailable,
  },
  DF_ERR_JOB_FAILED: {
    when: "a preheat job ended in FAILURE",
    message: "job failed",
    exitCode: ExitCode.UNAVAILABLE,
    httpStatus: 502,
    rpcCode: RpcCode.Aborted,
  },
  DF_ERR_RESTART_REQUIRED: {
    when: "`init containerd`: containerd must be restarted to use the mirror (config.toml changes), and --restart was not given or the restart failed",
    message: "containerd restart required",
    exitCode: ExitCode.RESTART_REQUIRED,
    httpStatus: 500,
    rpcCode: RpcCode.FailedPrecondition,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;
