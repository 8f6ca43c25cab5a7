import { Code, ConnectError } from "@connectrpc/connect";
import { DamselflyError } from "../common/errors.js";
import { toConnectError } from "../protocol/index.js";

const TASK_ID = /^[0-9a-f]{64}$/;
const MAX_ID = 256;

export function invalid(message: string): DamselflyError {
  return new DamselflyError("DF_ERR_INVALID_REQUEST", message);
}

export function checkId(what: string, v: string): void {
  if (v === "") throw invalid(`${what} is empty`);
  if (v.length > MAX_ID) throw invalid(`${what} is longer than ${MAX_ID} characters`);
}

export function checkTaskId(v: string): void {
  if (!TASK_ID.test(v)) throw invalid(`task_id ${JSON.stringify(v.slice(0, 80))} is not 64 lowercase hex characters`);
}

// The daemon must (re-)announce its host: FailedPrecondition, with our stable
// DF_ERR_INVALID_REQUEST code in the metadata.
export function hostNotAnnounced(hostId: string): ConnectError {
  const ce = toConnectError(new DamselflyError("DF_ERR_INVALID_REQUEST", `host ${hostId} not announced`));
  return new ConnectError(ce.rawMessage, Code.FailedPrecondition, ce.metadata);
}
