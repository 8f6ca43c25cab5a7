import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { DamselflyError, ERROR_CODES } from "../common/errors.js";
import { ErrorDetailSchema, type ErrorDetail } from "./gen/damselfly/common/v1/common_pb.js";
import { ERROR_HEADER as CODE_HEADER, SOURCE_STATUS_HEADER as STATUS_HEADER } from "./headers.js";

// Errors cross RPC boundaries as ConnectErrors whose metadata keep our stable
// code, so the far side can rebuild the same DamselflyError.
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError && err.metadata.has(CODE_HEADER)) return err;
  const e = DamselflyError.from(err);
  const meta = new Headers({ [CODE_HEADER]: e.code });
  if (e.sourceStatus !== undefined) meta.set(STATUS_HEADER, String(e.sourceStatus));
  return new ConnectError(e.message, e.rpcCode as Code, meta, undefined, err);
}

export function fromConnectError(err: unknown, unavailable: DamselflyError["code"] = "DF_ERR_INTERNAL"): DamselflyError {
  if (err instanceof DamselflyError) return err;
  const ce = ConnectError.from(err);
  const code = ce.metadata.get(CODE_HEADER);
  if (code && DamselflyError.isCode(code)) {
    const status = ce.metadata.get(STATUS_HEADER);
    return new DamselflyError(code, ce.rawMessage, status ? { sourceStatus: Number(status), cause: err } : { cause: err });
  }
  if (ce.code === Code.Unavailable) return new DamselflyError(unavailable, `${ERROR_CODES[unavailable].message}: ${ce.rawMessage}`, { cause: err });
  if (ce.code === Code.DeadlineExceeded) return new DamselflyError("DF_ERR_TIMEOUT", ce.rawMessage, { cause: err });
  if (ce.code === Code.Canceled) return new DamselflyError("DF_ERR_CANCELLED", ce.rawMessage, { cause: err });
  return new DamselflyError("DF_ERR_INTERNAL", ce.rawMessage, { cause: err });
}

export function toErrorDetail(err: unknown): ErrorDetail {
  const e = DamselflyError.from(err);
  return create(ErrorDetailSchema, {
    code: e.code,
    message: e.message,
    ...(e.sourceStatus !== undefined ? { source: { statusCode: e.sourceStatus, temporary: e.temporary } } : {}),
  });
}

export function fromErrorDetail(d: ErrorDetail | undefined): DamselflyError {
  if (!d) return new DamselflyError("DF_ERR_INTERNAL", "unknown failure");
  const code = DamselflyError.isCode(d.code) ? d.code : "DF_ERR_INTERNAL";
  return new DamselflyError(code, d.message || undefined, d.source ? { sourceStatus: d.source.statusCode, temporary: d.source.temporary } : {});
}
