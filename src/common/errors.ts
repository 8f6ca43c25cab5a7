// Every error Damselfly raises is declared here, once, with a stable code.
// The code travels across process boundaries (RPC metadata, HTTP headers) so a
// failure seen by a seed peer reaches the `get` user with the same meaning.

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
  readonly exitCode: number;
  readonly httpStatus: number;
  readonly rpcCode: number;
}

// The table of codes. Never reuse or rename a code: users grep logs for them.
export const ERROR_CODES = {
  DF_ERR_INTERNAL: { message: "internal error", exitCode: ExitCode.GENERIC, httpStatus: 500, rpcCode: RpcCode.Internal },
  DF_ERR_USAGE: { message: "invalid usage", exitCode: ExitCode.USAGE, httpStatus: 400, rpcCode: RpcCode.InvalidArgument },
  DF_ERR_INVALID_URL: { message: "invalid URL", exitCode: ExitCode.USAGE, httpStatus: 400, rpcCode: RpcCode.InvalidArgument },
  DF_ERR_INVALID_DIGEST: { message: "invalid digest", exitCode: ExitCode.USAGE, httpStatus: 400, rpcCode: RpcCode.InvalidArgument },
  DF_ERR_INVALID_REQUEST: { message: "invalid request", exitCode: ExitCode.USAGE, httpStatus: 400, rpcCode: RpcCode.InvalidArgument },
  DF_ERR_CONFIG: { message: "invalid configuration", exitCode: ExitCode.CONFIG, httpStatus: 500, rpcCode: RpcCode.FailedPrecondition },
  DF_ERR_SOURCE_STATUS: { message: "origin returned an error status", exitCode: ExitCode.ORIGIN_STATUS, httpStatus: 502, rpcCode: RpcCode.FailedPrecondition },
  DF_ERR_SOURCE_UNREACHABLE: { message: "origin unreachable", exitCode: ExitCode.UNAVAILABLE, httpStatus: 502, rpcCode: RpcCode.Unavailable },
  DF_ERR_SOURCE_PROTOCOL: { message: "origin response is unusable", exitCode: ExitCode.UNAVAILABLE, httpStatus: 502, rpcCode: RpcCode.Unavailable },
  DF_ERR_DAEMON_UNAVAILABLE: { message: "daemon unreachable", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.Unavailable },
  DF_ERR_SCHEDULER_UNAVAILABLE: { message: "scheduler unreachable", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.Unavailable },
  DF_ERR_NO_PARENT: { message: "no peer can serve the task and back-to-source is not allowed", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.Unavailable },
  DF_ERR_BACK_TO_SOURCE_LIMIT: { message: "back-to-source limit reached for this task", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.ResourceExhausted },
  DF_ERR_UPLOAD_BUSY: { message: "upload slots exhausted", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.ResourceExhausted },
  DF_ERR_PARENT_FAILED: { message: "parent failed to serve a piece", exitCode: ExitCode.UNAVAILABLE, httpStatus: 502, rpcCode: RpcCode.Unavailable },
  DF_ERR_DIGEST_MISMATCH: { message: "digest mismatch", exitCode: ExitCode.INTEGRITY, httpStatus: 502, rpcCode: RpcCode.DataLoss },
  DF_ERR_PIECE_CORRUPT: { message: "piece failed its CRC-32 check", exitCode: ExitCode.INTEGRITY, httpStatus: 502, rpcCode: RpcCode.DataLoss },
  DF_ERR_TIMEOUT: { message: "timed out", exitCode: ExitCode.TIMEOUT, httpStatus: 504, rpcCode: RpcCode.DeadlineExceeded },
  DF_ERR_CANCELLED: { message: "cancelled", exitCode: ExitCode.GENERIC, httpStatus: 499, rpcCode: RpcCode.Canceled },
  DF_ERR_STORAGE_FULL: { message: "no space left on device", exitCode: ExitCode.STORAGE, httpStatus: 507, rpcCode: RpcCode.ResourceExhausted },
  DF_ERR_STORAGE_IO: { message: "storage I/O error", exitCode: ExitCode.STORAGE, httpStatus: 500, rpcCode: RpcCode.Internal },
  DF_ERR_OUTPUT: { message: "cannot write output", exitCode: ExitCode.STORAGE, httpStatus: 500, rpcCode: RpcCode.FailedPrecondition },
  DF_ERR_TASK_NOT_FOUND: { message: "task not found", exitCode: ExitCode.ORIGIN_STATUS, httpStatus: 404, rpcCode: RpcCode.NotFound },
  DF_ERR_PIECE_NOT_FOUND: { message: "piece not available", exitCode: ExitCode.ORIGIN_STATUS, httpStatus: 404, rpcCode: RpcCode.NotFound },
  DF_ERR_SHUTTING_DOWN: { message: "the daemon is shutting down", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.Unavailable },
  DF_ERR_TASK_IN_USE: { message: "task is in use", exitCode: ExitCode.UNAVAILABLE, httpStatus: 409, rpcCode: RpcCode.FailedPrecondition },
  // Manager (control plane).
  DF_ERR_UNAUTHENTICATED: { message: "authentication required", exitCode: ExitCode.AUTH, httpStatus: 401, rpcCode: RpcCode.Unauthenticated },
  DF_ERR_PERMISSION_DENIED: { message: "permission denied", exitCode: ExitCode.AUTH, httpStatus: 403, rpcCode: RpcCode.PermissionDenied },
  DF_ERR_NOT_FOUND: { message: "not found", exitCode: ExitCode.ORIGIN_STATUS, httpStatus: 404, rpcCode: RpcCode.NotFound },
  DF_ERR_CONFLICT: { message: "already exists", exitCode: ExitCode.USAGE, httpStatus: 409, rpcCode: RpcCode.AlreadyExists },
  DF_ERR_DATABASE: { message: "database error", exitCode: ExitCode.GENERIC, httpStatus: 500, rpcCode: RpcCode.Internal },
  DF_ERR_MANAGER_UNAVAILABLE: { message: "manager unreachable", exitCode: ExitCode.UNAVAILABLE, httpStatus: 503, rpcCode: RpcCode.Unavailable },
  DF_ERR_JOB_FAILED: { message: "job failed", exitCode: ExitCode.UNAVAILABLE, httpStatus: 502, rpcCode: RpcCode.Aborted },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorOptions {
  cause?: unknown;
  // HTTP status the origin answered, when the error is about the origin.
  sourceStatus?: number;
  temporary?: boolean;
}

export class DamselflyError extends Error {
  readonly code: ErrorCode;
  readonly sourceStatus?: number;
  readonly temporary: boolean;

  constructor(code: ErrorCode, message?: string, options: ErrorOptions = {}) {
    super(message ?? ERROR_CODES[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DamselflyError";
    this.code = code;
    if (options.sourceStatus !== undefined) this.sourceStatus = options.sourceStatus;
    this.temporary = options.temporary ?? false;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exitCode;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].httpStatus;
  }

  get rpcCode(): number {
    return ERROR_CODES[this.code].rpcCode;
  }

  // Normalises anything caught into a DamselflyError; system errors are mapped
  // in one place so every component reports them alike.
  static from(err: unknown, fallback: ErrorCode = "DF_ERR_INTERNAL"): DamselflyError {
    if (err instanceof DamselflyError) return err;
    const sys = err as NodeJS.ErrnoException | undefined;
    const sysCode = typeof sys?.code === "string" ? sys.code : undefined;
    const message = err instanceof Error ? err.message : String(err);
    if (sysCode !== undefined) {
      const mapped = SYSTEM_ERRORS[sysCode];
      if (mapped !== undefined) {
        // Network trouble may pass; a full disk or a permission problem will not.
        const temporary = mapped === "DF_ERR_SOURCE_UNREACHABLE" || mapped === "DF_ERR_TIMEOUT";
        return new DamselflyError(mapped, `${ERROR_CODES[mapped].message}: ${message}`, { cause: err, temporary });
      }
    }
    if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) {
      return new DamselflyError(err.name === "TimeoutError" ? "DF_ERR_TIMEOUT" : "DF_ERR_CANCELLED", message, { cause: err });
    }
    return new DamselflyError(fallback, message, { cause: err });
  }

  static isCode(code: string): code is ErrorCode {
    return Object.hasOwn(ERROR_CODES, code);
  }
}

const SYSTEM_ERRORS: Record<string, ErrorCode> = {
  ENOSPC: "DF_ERR_STORAGE_FULL",
  EDQUOT: "DF_ERR_STORAGE_FULL",
  EIO: "DF_ERR_STORAGE_IO",
  EROFS: "DF_ERR_STORAGE_IO",
  EACCES: "DF_ERR_OUTPUT",
  EPERM: "DF_ERR_OUTPUT",
  EISDIR: "DF_ERR_OUTPUT",
  ENOTDIR: "DF_ERR_OUTPUT",
  ECONNREFUSED: "DF_ERR_SOURCE_UNREACHABLE",
  ECONNRESET: "DF_ERR_SOURCE_UNREACHABLE",
  ENOTFOUND: "DF_ERR_SOURCE_UNREACHABLE",
  EAI_AGAIN: "DF_ERR_SOURCE_UNREACHABLE",
  EHOSTUNREACH: "DF_ERR_SOURCE_UNREACHABLE",
  ENETUNREACH: "DF_ERR_SOURCE_UNREACHABLE",
  ETIMEDOUT: "DF_ERR_TIMEOUT",
  UND_ERR_CONNECT_TIMEOUT: "DF_ERR_SOURCE_UNREACHABLE",
  UND_ERR_SOCKET: "DF_ERR_SOURCE_UNREACHABLE",
  UND_ERR_HEADERS_TIMEOUT: "DF_ERR_TIMEOUT",
  UND_ERR_BODY_TIMEOUT: "DF_ERR_TIMEOUT",
};
