import type { ServerResponse } from "node:http";
import { DamselflyError, ERROR_CODES } from "../../common/errors.js";

// An error the daemon itself produced (not the upstream's): JSON body with the
// stable code, also in X-Damselfly-Error so clients that only show status
// lines still say why.
export function sendError(res: ServerResponse, err: unknown): void {
  const e = DamselflyError.from(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = ERROR_CODES[e.code]?.httpStatus ?? 500;
  const body = JSON.stringify({ code: e.code, message: e.message }) + "\n";
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), "x-damselfly-error": e.code });
  res.end(body);
}
