import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { request, type Dispatcher } from "undici";
import { DamselflyError } from "../../common/errors.js";
import { clientResponseHeaders, upstreamRequestHeaders } from "./headers.js";
import { sendError } from "./respond.js";

// Streams a request to the upstream and its response back unchanged
// (status, headers, body; redirects are the client's business). Registry
// errors (401 with its WWW-Authenticate, 404, 429, 5xx) reach the client as is.
export async function forward(
  req: IncomingMessage,
  res: ServerResponse,
  url: string,
  dispatcher: Dispatcher,
  extra: Record<string, string> = {},
): Promise<void> {
  const method = req.method ?? "GET";
  const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort(new DamselflyError("DF_ERR_CANCELLED", "client went away"));
  };
  res.on("close", onClose);
  let upstream: Dispatcher.ResponseData;
  try {
    upstream = await request(url, {
      method: method as Dispatcher.HttpMethod,
      headers: { ...upstreamRequestHeaders(req.headers), ...extra },
      body: hasBody && method !== "GET" && method !== "HEAD" ? req : null,
      dispatcher,
      signal: abort.signal,
    });
  } catch (err) {
    res.off("close", onClose);
    if (abort.signal.aborted) return;
    const e = DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
    // The proxy reaches no address the daemon itself may not fetch from.
    if (e.code === "DF_ERR_EGRESS_DENIED" || e.code === "DF_ERR_PROXY_DENIED") return sendError(res, e);
    sendError(
      res,
      new DamselflyError(
        e.code === "DF_ERR_TIMEOUT" ? "DF_ERR_TIMEOUT" : "DF_ERR_SOURCE_UNREACHABLE",
        `upstream ${new URL(url).origin} unreachable: ${e.message}`,
      ),
    );
    return;
  }
  res.writeHead(upstream.statusCode, clientResponseHeaders(upstream.headers));
  try {
    if (method === "HEAD") {
      upstream.body.resume();
      res.end();
    } else await pipeline(upstream.body, res);
  } catch {
    // Either side went away mid-body: nothing sensible left to send.
    res.destroy();
  } finally {
    res.off("close", onClose);
  }
}
