import { Agent, request, type Dispatcher } from "undici";
import { EgressPolicy } from "../../common/egress.js";
import { DamselflyError } from "../../common/errors.js";

// The manager's requests to registries (manifests, bearer tokens) for image
// preheat: what they may reach and how much they may read.
//
// - Every connection goes through the egress policy (common/egress.ts): the
//   built-in denials (link-local, cloud metadata, 0.0.0.0/8), on the resolved
//   address, so neither a job's URL nor a registry's token realm turns the
//   manager into a way to reach the metadata service.
// - A body is read up to a cap and the request aborted past it (a declared
//   Content-Length past it is refused before reading): a registry cannot make
//   the manager hold a 400 MiB "manifest".
// - A token realm gets the job's credentials only when it is the registry's
//   own origin or is https (what Docker does): a registry that names some
//   other plain-http host gets an anonymous token request, never the
//   password in clear text on another path.

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const MAX_TOKEN_BYTES = 1024 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 30_000;

export function registryDispatcher(egress = new EgressPolicy()): Agent {
  return new Agent({
    connect: egress.connector({ timeout: CONNECT_TIMEOUT_MS }),
    headersTimeout: HEADERS_TIMEOUT_MS,
    bodyTimeout: HEADERS_TIMEOUT_MS,
  });
}

export async function registryGet(
  url: string | URL,
  headers: Record<string, string>,
  dispatcher: Dispatcher,
  signal?: AbortSignal,
): Promise<Dispatcher.ResponseData> {
  try {
    return await request(url, { method: "GET", headers, dispatcher, ...(signal ? { signal } : {}) });
  } catch (err) {
    throw DamselflyError.from(err, "DF_ERR_SOURCE_UNREACHABLE");
  }
}

// Drops a response unread. undici reports a body destroyed without an error
// as an AbortError: nobody else listens here, so it is swallowed.
export function discard(res: Dispatcher.ResponseData): void {
  res.body.on("error", () => {});
  res.body.destroy();
}

// The body, up to `max` bytes; past it the response is dropped unread.
export async function readCapped(res: Dispatcher.ResponseData, max: number, what: string): Promise<Buffer> {
  const tooLarge = () => new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `${what} is larger than ${max} bytes`);
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    discard(res);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) {
      discard(res);
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

// Whether a token realm may be sent the job's credentials.
export function realmGetsCredentials(realm: URL, registry: URL): boolean {
  return realm.origin === registry.origin || realm.protocol === "https:";
}

// Docker's token protocol: GET realm?service=..&scope=.. (with Basic
// credentials when the caller gave them and the realm may have them) answers
// {"token"} or {"access_token"}.
export async function fetchToken(
  challenge: string,
  registry: URL,
  basic: string | undefined,
  dispatcher: Dispatcher,
  signal?: AbortSignal,
): Promise<string | undefined> {
  if (!/^bearer\s/i.test(challenge)) return undefined;
  const params: Record<string, string> = {};
  for (const m of challenge.slice(7).matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!.toLowerCase()] = m[2]!;
  if (!params.realm) return undefined;
  let u: URL;
  try {
    u = new URL(params.realm);
  } catch {
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", "registry token realm is not a URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", `registry token realm ${u.protocol} is not http(s)`);
  if (params.service) u.searchParams.set("service", params.service);
  if (params.scope) u.searchParams.set("scope", params.scope);
  const headers: Record<string, string> = basic && realmGetsCredentials(u, registry) ? { authorization: basic } : {};
  const res = await registryGet(u, headers, dispatcher, signal);
  if (res.statusCode !== 200) {
    discard(res);
    throw new DamselflyError("DF_ERR_SOURCE_STATUS", `registry token endpoint answered ${res.statusCode}`, { sourceStatus: res.statusCode });
  }
  const text = (await readCapped(res, MAX_TOKEN_BYTES, "registry token answer")).toString("utf8");
  let body: { token?: unknown; access_token?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new DamselflyError("DF_ERR_SOURCE_PROTOCOL", "registry token answer is not JSON");
  }
  const token = body.token ?? body.access_token;
  return typeof token === "string" ? token : undefined;
}
