// The outcome of an RPC as a test compares it: "ok", or the DF_ERR_ code it
// failed with. A server stream is read up to its first message.
import type { DamselflyError } from "../../src/common/errors.js";
import { fromConnectError } from "../../src/protocol/index.js";

export async function codeOf(p: Promise<unknown> | AsyncIterable<unknown>, unavailable?: DamselflyError["code"]): Promise<string> {
  try {
    if (Symbol.asyncIterator in (p as object)) for await (const _ of p as AsyncIterable<unknown>) break;
    else await p;
    return "ok";
  } catch (err) {
    return fromConnectError(err, unavailable).code;
  }
}
