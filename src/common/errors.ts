// Every error Damselfly raises is declared once, with a stable code, in
// error-codes.ts; this is the error class that carries one, and the mapping
// of system errors (ENOSPC, ECONNRESET...) to codes.
import { ERROR_CODES, ExitCode, RpcCode, type ErrorCode } from "./error-codes.js";

export { ERROR_CODES, ExitCode, RpcCode, type ErrorCode };

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
