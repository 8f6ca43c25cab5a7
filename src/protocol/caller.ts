import { createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { DamselflyError } from "../common/errors.js";
import { identityOfSocket, type PeerIdentity, type Role } from "../common/tls/roles.js";

// Who is calling an RPC, as the connection (not the request) says:
//   tls    a certificate of our CA, with its role and name
//   local  a Unix socket (file permissions decided who may connect)
//   open   no TLS configured: a loopback-only cluster, everyone trusted as
//          before TLS existed (docs/operations/security.md)
//   none   TLS is on but the peer showed no valid certificate
export type Caller =
  | { readonly kind: "tls"; readonly identity: PeerIdentity; readonly remoteAddress: string | undefined }
  | { readonly kind: "local" }
  | { readonly kind: "open"; readonly remoteAddress: string | undefined }
  | { readonly kind: "none"; readonly remoteAddress: string | undefined };

export type ServerTrust = "tls" | "local" | "open";

export const callerKey = createContextKey<Caller>({ kind: "none", remoteAddress: undefined }, { description: "damselfly caller" });

interface SocketLike {
  readonly remoteAddress?: string;
}

export function callerOfSocket(socket: unknown, trust: ServerTrust): Caller {
  const remoteAddress = (socket as SocketLike | undefined)?.remoteAddress;
  if (trust === "local") return { kind: "local" };
  if (trust === "open") return { kind: "open", remoteAddress };
  const identity = identityOfSocket(socket);
  return identity ? { kind: "tls", identity, remoteAddress } : { kind: "none", remoteAddress };
}

// The connection a request came on: for HTTP/2, its session's socket (the
// request's own socket object is made per stream), so identities are read
// once per connection (roles.ts).
export function connectionOf(req: { socket: unknown; stream?: { session?: { socket?: unknown } | undefined } }): unknown {
  return req.stream?.session?.socket ?? req.socket;
}

export function contextValuesFor(socket: unknown, trust: ServerTrust) {
  return createContextValues().set(callerKey, callerOfSocket(socket, trust));
}

export function callerOf(ctx: HandlerContext): Caller {
  return ctx.values.get(callerKey);
}

// Throws DF_ERR_PEER_ROLE unless the caller may make this call: a verified
// certificate of one of `roles`, or a Unix-socket caller when `local` is
// allowed, or anyone on an open (no-TLS, loopback) server.
export function requireRole(ctx: HandlerContext, roles: readonly Role[], what: string, opts: { local?: boolean } = {}): Caller {
  const c = callerOf(ctx);
  if (c.kind === "open") return c;
  if (c.kind === "local" && opts.local) return c;
  if (c.kind === "tls" && roles.includes(c.identity.role)) return c;
  const who = c.kind === "tls" ? `a ${c.identity.role} certificate (${c.identity.name})` : c.kind === "local" ? "a local caller" : "no certificate";
  throw new DamselflyError("DF_ERR_PEER_ROLE", `${what} needs a ${roles.join(" or ")} certificate; the caller has ${who}`);
}
